namespace TauCluster.Engine;

/// <summary>
/// How well a model predicts a text: the mean negative log-likelihood per token (nats), bits per byte of the text
/// scored, and perplexity, e^loss. <paramref name="Tokens"/> is how many tokens were scored: all but the first,
/// which nothing predicts.
/// </summary>
public sealed record EvaluationResult(long Tokens, long Bytes, double LossNatsPerToken, double BitsPerByte, double Perplexity);

/// <summary>
/// Scores a whole text in windows of the model's context, as Hugging Face's perplexity guide does: the first window
/// scores all its tokens, and each later one ends a stride further on and scores only the tokens that no earlier window
/// scored. So every token is scored once, with at least context − stride tokens before it (all that exist, near the
/// start). The largest stride, context − 1, overlaps windows by the one token that the next predicts from; it is
/// cheapest and gives the least context. A smaller stride costs about context / stride prefills per token and comes
/// closer to what the model does with its whole context.
/// </summary>
public static class Evaluation
{
    /// <summary>
    /// The loss of <paramref name="model"/> on <paramref name="text"/>, tokenized by the model's tokenizer.
    /// <paramref name="stride"/> defaults to half the context. <paramref name="progress"/> hears the tokens scored so far
    /// after each window.
    /// </summary>
    public static EvaluationResult Run(TauModel model, string text, int? stride = null, Action<long, long>? progress = null,
        CancellationToken cancellation = default)
    {
        var tokenizer = model.Tokenizer ?? throw new InvalidOptionsException("the model has no tokenizer (config.json \"tokenizer\"), so it cannot read a text");
        int[] tokens = [.. tokenizer.Encode(text)];
        if (tokens.Length < 2) throw new InvalidOptionsException($"the text holds {tokens.Length} token(s): scoring needs at least 2");
        int context = model.Config.SequenceLen;
        int step = stride ?? Math.Max(1, context / 2);
        if (context < 2) throw new InvalidOptionsException($"a context of {context} token predicts nothing");
        if (step < 1 || step >= context) throw new InvalidOptionsException($"stride = {step} must lie in [1, {context - 1}] (the model's context − 1)");

        var session = new InferenceSession(model);
        double nats = 0;
        long total = tokens.Length - 1;
        for (int scoredUpTo = 1; scoredUpTo < tokens.Length;)
        {
            cancellation.ThrowIfCancellationRequested();
            int end = Math.Min(scoredUpTo == 1 ? context : scoredUpTo + step, tokens.Length);
            int start = Math.Max(0, end - context);
            session.Truncate(0);
            var scores = session.AppendScored(tokens.AsSpan(start, end - start), top: 0);
            for (int p = scoredUpTo; p < end; p++) nats -= scores[p - start]!.Logprob;
            scoredUpTo = end;
            progress?.Invoke(end - 1, total);
        }
        // The bytes of the text the scored tokens make: all of it but the first token's.
        long bytes = System.Text.Encoding.UTF8.GetByteCount(text) - tokenizer.TokenBytes(tokens[0]).Length;
        double loss = nats / total;
        return new EvaluationResult(total, bytes, loss, nats / Math.Log(2) / Math.Max(bytes, 1), Math.Exp(loss));
    }
}
