using System.Text;
using TauCluster.Engine;

namespace TauCluster.Engine.Tests;

/// <summary>tau eval's arithmetic: every token scored once, each with the context its window gives it.</summary>
public sealed class EvaluationTests
{
    private static readonly TauModel Model = TauModel.CreateRandom(
        TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, vocab: 256, sequenceLen: 32) with { Tokenizer = "bytes" }, 3);

    /// <summary>−Σ log p of tokens[from..] given tokens[start..p), from one prefill of the window.</summary>
    private static double WindowNats(int[] tokens, int start, int end, int from)
    {
        var rows = new InferenceSession(Model).AppendAllLogits(tokens.AsSpan(start, end - start));
        double nats = 0;
        for (int p = from; p < end; p++)
        {
            var row = rows.AsSpan((p - start - 1) * 256, 256);
            nats -= row[tokens[p]] - TokenScore.LogSumExp(row);
        }
        return nats;
    }

    private const string Text = "In the beginning God created the heaven and the earth. And the earth was without form, and void.";

    /// <summary>What the windows must give: the first scores 1…31, each later one ends a stride further on and scores the rest.</summary>
    private static double ExpectedNats(int[] tokens, int stride)
    {
        double nats = WindowNats(tokens, 0, Math.Min(32, tokens.Length), 1);
        for (int scoredUpTo = 32; scoredUpTo < tokens.Length; scoredUpTo += stride)
        {
            int end = Math.Min(scoredUpTo + stride, tokens.Length);
            nats += WindowNats(tokens, Math.Max(0, end - 32), end, scoredUpTo);
        }
        return nats;
    }

    [Theory]
    [InlineData(31)]   // windows that overlap by the one token the next predicts from
    [InlineData(8)]
    [InlineData(1)]
    public void Each_token_is_scored_once_given_the_context_its_window_gives_it(int stride)
    {
        var tokens = Encoding.UTF8.GetBytes(Text).Select(b => (int)b).ToArray();
        long reported = 0;
        var result = Evaluation.Run(Model, Text, stride, progress: (done, total) =>
        {
            Assert.Equal(tokens.Length - 1, total);
            Assert.True(done > reported);
            reported = done;
        });
        Assert.Equal(tokens.Length - 1, result.Tokens);
        Assert.Equal(tokens.Length - 1, reported);
        Assert.Equal(ExpectedNats(tokens, stride) / (tokens.Length - 1), result.LossNatsPerToken, 4);
        Assert.Equal(Math.Exp(result.LossNatsPerToken), result.Perplexity, 6);
        // One byte per token: bits per byte is the loss in bits.
        Assert.Equal(tokens.Length - 1, result.Bytes);
        Assert.Equal(result.LossNatsPerToken / Math.Log(2), result.BitsPerByte, 6);
    }

    [Fact]
    public void More_context_scores_a_text_differently_than_less()
    {
        // The strides must matter, or the windows do not give the context they claim.
        Assert.NotEqual(Evaluation.Run(Model, Text, 31).LossNatsPerToken, Evaluation.Run(Model, Text, 4).LossNatsPerToken, 6);
    }

    [Fact]
    public void A_text_within_the_context_is_one_window_whatever_the_stride()
    {
        const string shortText = "Let there be light.";
        var tokens = Encoding.UTF8.GetBytes(shortText).Select(b => (int)b).ToArray();
        double expected = WindowNats(tokens, 0, tokens.Length, 1) / (tokens.Length - 1);
        Assert.Equal(expected, Evaluation.Run(Model, shortText).LossNatsPerToken, 4);
        Assert.Equal(expected, Evaluation.Run(Model, shortText, stride: 1).LossNatsPerToken, 4);
    }

    [Theory]
    [InlineData("x", 16, "the text holds 1 token(s)")]
    [InlineData(Text, 0, "stride = 0 must lie in [1, 31]")]
    [InlineData(Text, 32, "stride = 32 must lie in [1, 31]")]
    public void Bad_input_is_refused_with_what_is_wrong(string text, int stride, string message)
    {
        Assert.StartsWith(message, Assert.Throws<InvalidOptionsException>(() => Evaluation.Run(Model, text, stride)).Message);
    }

    [Fact]
    public void A_model_without_a_tokenizer_cannot_read_a_text()
    {
        var idsOnly = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Causal, 2, 1, vocab: 40), 1);
        Assert.Contains("no tokenizer", Assert.Throws<InvalidOptionsException>(() => Evaluation.Run(idsOnly, Text)).Message);
    }
}
