using TauCluster.Engine;

namespace TauCluster.Engine.Tests;

/// <summary>
/// The penalties and min-p on hand-made logits, each as its API defines it: OpenAI's presence and frequency penalties
/// over the completion's own tokens, llama.cpp's and vLLM's repetition penalty over the whole session, and min-p
/// against the likeliest token's probability.
/// </summary>
public sealed class PenaltyTests
{
    private static float[] Adjusted(SamplingOptions options, float[] logits, int[] transcript, int outputStart)
    {
        var sampler = new Sampler(logits.Length, options);
        sampler.BeginCompletion(transcript, outputStart);
        return sampler.Adjusted(logits).ToArray();
    }

    [Fact]
    public void Presence_subtracts_once_from_each_token_the_completion_generated_and_not_from_the_prompts()
    {
        // Token 0 was generated twice, token 1 is only in the prompt, token 2 never appeared.
        float[] logits = [2f, 2f, 2f];
        var adjusted = Adjusted(new SamplingOptions(PresencePenalty: 0.5), logits, [1, 0, 0], outputStart: 1);
        Assert.Equal([1.5f, 2f, 2f], adjusted);
    }

    [Fact]
    public void Frequency_subtracts_once_per_time_a_token_was_generated_and_adds_to_presence()
    {
        float[] logits = [1f, 1f, 1f, 1f];
        Assert.Equal([1f - 3 * 0.25f, 1f - 0.25f, 1f, 1f], Adjusted(new SamplingOptions(FrequencyPenalty: 0.25), logits, [3, 0, 0, 1, 0], outputStart: 1));
        Assert.Equal([1f - (3 * 0.25f + 0.5f), 1f - (0.25f + 0.5f), 1f, 1f],
            Adjusted(new SamplingOptions(PresencePenalty: 0.5, FrequencyPenalty: 0.25), logits, [3, 0, 0, 1, 0], outputStart: 1));
        // Negative penalties encourage repetition, as OpenAI allows.
        Assert.Equal([1f + 2 * 1.5f, 1f, 1f, 1f], Adjusted(new SamplingOptions(FrequencyPenalty: -1.5), logits, [0, 0], outputStart: 0));
    }

    [Fact]
    public void Repetition_divides_positive_and_multiplies_negative_logits_of_every_token_in_the_session()
    {
        float[] logits = [3f, -1f, 3f, -1f];
        // Tokens 0 and 1 are in the prompt (before outputStart): the repetition penalty counts them anyway.
        var adjusted = Adjusted(new SamplingOptions(RepetitionPenalty: 1.5), logits, [0, 1], outputStart: 2);
        Assert.Equal([2f, -1.5f, 3f, -1f], adjusted);
        // Below 1 it rewards repetition instead.
        Assert.Equal([6f, -0.5f, 3f, -1f], Adjusted(new SamplingOptions(RepetitionPenalty: 0.5), logits, [0, 1], outputStart: 2));
    }

    [Fact]
    public void Min_p_drops_the_tokens_less_likely_than_that_fraction_of_the_likeliest()
    {
        // At temperature 1 the probabilities stand 1 : 0.5 : 0.05 : 0.2.
        float[] logits = [0f, MathF.Log(0.5f), MathF.Log(0.05f), MathF.Log(0.2f)];
        var adjusted = Adjusted(new SamplingOptions(MinP: 0.1), logits, [], 0);
        Assert.Equal([logits[0], logits[1], float.NegativeInfinity, logits[3]], adjusted);
        // Temperature changes the ratios: at T = 2 they are 1 : 0.71 : 0.22 : 0.45, and min_p 0.3 drops only token 2.
        Assert.Equal([logits[0], logits[1], float.NegativeInfinity, logits[3]], Adjusted(new SamplingOptions(Temperature: 2, MinP: 0.3), logits, [], 0));
        // A dropped token is never drawn; without min_p it is, about 1 time in 35.
        int Draws(SamplingOptions options)
        {
            var sampler = new Sampler(logits.Length, options);
            int hits = 0;
            for (int i = 0; i < 4000; i++)
            {
                sampler.BeginCompletion([], 0);   // counts stay empty: only min-p is under test
                if (sampler.Sample(logits) == 2) hits++;
            }
            return hits;
        }
        Assert.Equal(0, Draws(new SamplingOptions(Seed: 9, MinP: 0.1)));
        Assert.InRange(Draws(new SamplingOptions(Seed: 9)), 60, 180);
    }

    [Fact]
    public void Penalties_change_what_greedy_decoding_picks_and_the_sampled_distribution()
    {
        float[] logits = [2f, 1.9f, 0f];
        var plain = new Sampler(3, SamplingOptions.Greedy);
        Assert.Equal([0, 0, 0], new[] { plain.Sample(logits), plain.Sample(logits), plain.Sample(logits) });
        // Once 0 has been drawn, a presence penalty of 0.5 makes 1 the highest (1.5 < 1.9); once both have been, 0 leads
        // again (1.5 > 1.4) and stays ahead: presence counts a token once, however often it comes.
        var penalised = new Sampler(3, SamplingOptions.Greedy with { PresencePenalty = 0.5 });
        Assert.Equal([0, 1, 0, 0], new[] { penalised.Sample(logits), penalised.Sample(logits), penalised.Sample(logits), penalised.Sample(logits) });
        // A frequency penalty counts each time: 0 and 1 take turns.
        var frequent = new Sampler(3, SamplingOptions.Greedy with { FrequencyPenalty = 0.5 });
        Assert.Equal([0, 1, 0, 1], new[] { frequent.Sample(logits), frequent.Sample(logits), frequent.Sample(logits), frequent.Sample(logits) });

        // Sampled: after token 0 was generated, a frequency penalty of ln 4 makes it 4 times less likely relative to 1.
        int zeros = 0, ones = 0;
        var sampler = new Sampler(3, new SamplingOptions(Seed: 3, FrequencyPenalty: Math.Log(4)));
        for (int i = 0; i < 20000; i++)
        {
            sampler.BeginCompletion([0], 0);
            int t = sampler.Sample([1f, 1f, float.NegativeInfinity]);
            if (t == 0) zeros++; else ones++;
        }
        Assert.InRange(ones / (double)zeros, 3.6, 4.4);
    }

    [Fact]
    public void The_counts_follow_the_transcript_so_a_restored_sampler_draws_the_same()
    {
        var options = new SamplingOptions(Temperature: 0.9, Seed: 17, PresencePenalty: 0.7, FrequencyPenalty: 0.3, RepetitionPenalty: 1.2, MinP: 0.02);
        var random = new Random(5);
        var logits = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, 64).Select(_ => (float)random.NextDouble() * 4).ToArray()).ToArray();
        int[] prompt = [3, 5, 7, 5];

        List<int> Run(int restartAt)
        {
            var transcript = new List<int>(prompt);
            var sampler = new Sampler(64, options);
            sampler.BeginCompletion(transcript.ToArray(), prompt.Length);
            for (int step = 0; step < logits.Length; step++)
            {
                if (step == restartAt)
                {
                    // As on another silo: a new sampler from the saved generator, its counts from the transcript.
                    var state = sampler.State;
                    sampler = new Sampler(64, options, state);
                    sampler.BeginCompletion(transcript.ToArray(), prompt.Length);
                }
                transcript.Add(sampler.Sample(logits[step]));
            }
            return transcript;
        }

        var whole = Run(restartAt: -1);
        Assert.Equal(whole, Run(restartAt: 17));
        Assert.Equal(whole, Run(restartAt: -1));
        Assert.NotEqual(whole, new Func<List<int>>(() =>
        {
            var sampler = new Sampler(64, options with { PresencePenalty = 0, FrequencyPenalty = 0, RepetitionPenalty = 1, MinP = 0 });
            var t = new List<int>(prompt);
            foreach (var l in logits) t.Add(sampler.Sample(l));
            return t;
        })());
    }

    [Theory]
    [InlineData(2.5, 0, 1, 0, "presence_penalty")]
    [InlineData(0, -2.01, 1, 0, "frequency_penalty")]
    [InlineData(0, 0, 0, 0, "repetition_penalty")]
    [InlineData(0, 0, -1, 0, "repetition_penalty")]
    [InlineData(0, 0, 1, 1.5, "min_p")]
    [InlineData(0, 0, 1, -0.1, "min_p")]
    public void Penalties_out_of_range_are_refused_by_name(double presence, double frequency, double repetition, double minP, string field)
    {
        var e = Assert.Throws<InvalidOptionsException>(() => new SamplingOptions(PresencePenalty: presence, FrequencyPenalty: frequency,
            RepetitionPenalty: repetition, MinP: minP).Validate());
        Assert.StartsWith(field + " = ", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A per-token allocation shows in every window of draws. One window may see a one-off the runtime makes on this
    /// thread (CI once counted 7,952 bytes in a single window of 200 while the whole suite ran in parallel, and the
    /// test alone never does), so most windows, not all, must count exactly nothing.
    /// </summary>
    [Fact]
    public void Sampling_with_penalties_allocates_nothing_per_token()
    {
        var sampler = new Sampler(50257, new SamplingOptions(Temperature: 0.8, TopK: 40, Seed: 1, PresencePenalty: 0.5, FrequencyPenalty: 0.5, RepetitionPenalty: 1.1, MinP: 0.05));
        var logits = Enumerable.Range(0, 50257).Select(i => (float)Math.Sin(i)).ToArray();
        sampler.BeginCompletion([1, 2, 3], 1);
        for (int i = 0; i < 50; i++) sampler.Sample(logits);   // warm: JIT tiers and first use
        var windows = new long[5];
        for (int window = 0; window < windows.Length; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 40; i++) sampler.Sample(logits);
            windows[window] = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Assert.True(windows.Count(bytes => bytes == 0) >= 4, $"bytes allocated by windows of 40 draws: {string.Join(", ", windows)}");
    }
}
