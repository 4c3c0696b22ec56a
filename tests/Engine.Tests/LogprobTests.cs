using TauCluster.Engine;

namespace TauCluster.Engine.Tests;

/// <summary>
/// Log-probabilities as the API reports them: the log-softmax of the model's raw logits, scored from a prefill's rows
/// or recorded as the sampler draws, and OpenAI's logit_bias in the sampler.
/// </summary>
public sealed class LogprobTests
{
    [Fact]
    public void A_score_is_the_log_softmax_of_the_logits_with_the_likeliest_tokens_first_and_ties_by_lower_id()
    {
        float[] logits = [1f, 3f, 3f, -2f, 0.5f];
        double logSum = Math.Log(logits.Sum(l => Math.Exp(l)));
        var score = TokenScore.Of(logits, token: 4, top: 3);
        Assert.Equal(4, score.Token);
        Assert.Equal(0.5 - logSum, score.Logprob, 5);
        Assert.Equal([1, 2, 0], score.TopTokens);
        Assert.Equal([3 - logSum, 3 - logSum, 1 - logSum], score.TopLogprobs.Select(l => (double)l), new ToleranceComparer(1e-5));
        // Probabilities: they add up to 1, and no more alternatives exist than the vocabulary has.
        var all = TokenScore.Of(logits, 0, top: 20);
        Assert.Equal(logits.Length, all.TopTokens.Length);
        Assert.Equal(1.0, all.TopLogprobs.Sum(l => Math.Exp(l)), 5);
        Assert.Empty(TokenScore.Of(logits, 0, top: 0).TopTokens);
    }

    [Fact]
    public void Large_logits_do_not_overflow_the_log_sum()
    {
        float[] logits = [1000f, 1000f];
        Assert.Equal(-Math.Log(2), TokenScore.Of(logits, 0, 1).Logprob, 5);
    }

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void A_scored_prefill_gives_each_tokens_log_softmax_from_the_row_before_it_and_keeps_the_last_logits(AttentionKind attention)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 2, 1, vocab: 61, sequenceLen: 700), 12);
        // Longer than one prefill block, so that a row at a block's edge scores the next block's first token.
        var prompt = TestSupport.RandomTokens(InferenceSession.PrefillBlock + 40, 61, 5);
        var rows = new InferenceSession(model).AppendAllLogits(prompt);
        var plain = new InferenceSession(model);
        plain.Append(prompt);

        var scored = new InferenceSession(model);
        var scores = scored.AppendScored(prompt, top: 2);
        Assert.Null(scores[0]);   // nothing comes before the first token
        for (int i = 1; i < prompt.Length; i++)
        {
            var row = rows.AsSpan((i - 1) * 61, 61);
            Assert.Equal(prompt[i], scores[i]!.Token);
            Assert.Equal(row[prompt[i]] - TokenScore.LogSumExp(row), scores[i]!.Logprob, 4);
            Assert.Equal(Sampler.Likeliest(row, 2), scores[i]!.TopTokens);
        }
        Assert.Equal(plain.Logits.ToArray(), scored.Logits.ToArray());

        // More tokens after it: the first is scored against the logits the session already has.
        var more = scored.AppendScored([7, 8], top: 0);
        Assert.Equal(plain.Logits[7] - TokenScore.LogSumExp(plain.Logits), more[0]!.Logprob, 4);
        plain.Append(7);
        Assert.Equal(plain.Logits[8] - TokenScore.LogSumExp(plain.Logits), more[1]!.Logprob, 4);
    }

    [Fact]
    public void A_sampler_records_each_draw_against_the_raw_logits_whatever_its_temperature_and_penalties()
    {
        float[] logits = [2f, 1f, 0f, -1f];
        var sampler = new Sampler(4, new SamplingOptions(Temperature: 0.7, Seed: 3, FrequencyPenalty: 1.5, LogitBias: [(3, 2f)]))
        {
            Scores = new DrawnScores(top: 2),
        };
        var drawn = Enumerable.Range(0, 6).Select(_ => sampler.Sample(logits)).ToArray();
        foreach (int token in drawn)
        {
            var score = sampler.Scores.Take();
            Assert.Equal(token, score.Token);
            Assert.Equal(TokenScore.Of(logits, token, 2), score, new ScoreComparer());
        }
        Assert.Throws<InvalidOperationException>(() => sampler.Scores.Take());

        // Recording draws nothing from the generator: the tokens are those of a sampler that records none.
        var silent = new Sampler(4, new SamplingOptions(Temperature: 0.7, Seed: 3, FrequencyPenalty: 1.5, LogitBias: [(3, 2f)]));
        Assert.Equal(drawn, Enumerable.Range(0, 6).Select(_ => silent.Sample(logits)));
    }

    [Fact]
    public async Task The_workers_scored_prefill_equals_the_sessions_own()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, vocab: 50), 4);
        var prompt = TestSupport.RandomTokens(30, 50, 9);
        using var workers = new ComputeWorkers();
        var session = new InferenceSession(model);
        var viaWorker = await workers.For(model).Score(session, prompt, top: 3);
        var alone = new InferenceSession(model).AppendScored(prompt, top: 3);
        Assert.Equal(alone.Select(s => s?.Logprob), viaWorker.Select(s => s?.Logprob));
        // The session then decodes on as usual: its next token is the one a plain prefill would give.
        var plain = new InferenceSession(model);
        Assert.Equal(Sampler.ArgMax(plain.Append(prompt)), await workers.For(model).Prefill(session, ReadOnlyMemory<int>.Empty, new Sampler(50, SamplingOptions.Greedy)));
    }

    [Fact]
    public void Logit_bias_adds_to_each_listed_tokens_logit_before_the_penalties()
    {
        float[] logits = [2f, 1f, 0f];
        var sampler = new Sampler(3, new SamplingOptions(LogitBias: [(2, 2.5f), (0, -1f)], FrequencyPenalty: 1));
        sampler.BeginCompletion([2], outputStart: 0);
        Assert.Equal([1f, 1f, 2.5f - 1f], sampler.Adjusted(logits).ToArray());
        // −100 bans a token and +100 forces it, as OpenAI describes.
        var greedyBanned = new Sampler(3, new SamplingOptions(Temperature: 0, LogitBias: [(0, -100f)]));
        Assert.Equal(1, greedyBanned.Sample(logits));
        var forced = new Sampler(3, new SamplingOptions(Temperature: 1, Seed: 1, LogitBias: [(2, 100f)]));
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(2, forced.Sample(logits)));
    }

    [Theory]
    [InlineData(3, 1f, "logit_bias names token 3, outside the model's vocabulary of 3")]
    [InlineData(-1, 1f, "logit_bias names token -1")]
    [InlineData(0, 100.5f, "logit_bias = 100.5 for token 0 must lie in [-100, 100]")]
    [InlineData(0, float.NaN, "logit_bias = NaN for token 0")]
    public void A_bias_out_of_range_or_for_a_token_not_in_the_vocabulary_is_refused(int token, float bias, string message)
    {
        var e = Assert.Throws<InvalidOptionsException>(() => new Sampler(3, new SamplingOptions(LogitBias: [(token, bias)])));
        Assert.StartsWith(message, e.Message);
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }

    private sealed class ScoreComparer : IEqualityComparer<TokenScore>
    {
        public bool Equals(TokenScore? x, TokenScore? y) => x is not null && y is not null && x.Token == y.Token && x.Logprob == y.Logprob
            && x.TopTokens.SequenceEqual(y.TopTokens) && x.TopLogprobs.SequenceEqual(y.TopLogprobs);
        public int GetHashCode(TokenScore obj) => obj.Token;
    }
}
