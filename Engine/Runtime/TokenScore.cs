using System.Collections.Concurrent;
using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// A token's log-probability where it stands, under the model's own distribution: the log-softmax of the raw logits,
/// before temperature, penalties, bias and filters (what vLLM reports by default, and what a log-likelihood needs), with
/// the likeliest tokens there, likeliest first and ties by the lower id.
/// </summary>
public sealed record TokenScore(int Token, float Logprob, int[] TopTokens, float[] TopLogprobs)
{
    /// <summary>The most alternatives one position reports: OpenAI's limit for top_logprobs.</summary>
    public const int MaxTop = 20;

    /// <summary><paramref name="token"/>'s score against <paramref name="logits"/>, with the <paramref name="top"/> likeliest tokens.</summary>
    public static TokenScore Of(ReadOnlySpan<float> logits, int token, int top)
    {
        double logSum = LogSumExp(logits);
        int[] likeliest = Sampler.Likeliest(logits, Math.Clamp(top, 0, MaxTop));
        var topLogprobs = new float[likeliest.Length];
        for (int i = 0; i < likeliest.Length; i++) topLogprobs[i] = (float)(logits[likeliest[i]] - logSum);
        return new TokenScore(token, (float)(logits[token] - logSum), likeliest, topLogprobs);
    }

    /// <summary>log Σ e^l, shifted by the largest logit so that no term overflows; summed in double.</summary>
    public static double LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return max + Math.Log(sum);
    }
}

/// <summary>
/// The scores of the tokens a sampler draws, in the order it draws them, for a caller that asked for log-probabilities:
/// the sampler records one per draw, on whichever thread samples, before the token is handed on, and the caller takes
/// one for each token it takes. A generation's draws are the tokens it hands out, in order, so the two stay in step.
/// </summary>
public sealed class DrawnScores(int top)
{
    private readonly ConcurrentQueue<TokenScore> drawn = new();

    /// <summary>How many of the likeliest tokens each score lists.</summary>
    public int Top { get; } = top;

    internal void Record(ReadOnlySpan<float> logits, int token) => drawn.Enqueue(TokenScore.Of(logits, token, Top));

    public TokenScore Take() =>
        drawn.TryDequeue(out var score) ? score : throw new InvalidOperationException("the sampler recorded no score for the token taken");
}
