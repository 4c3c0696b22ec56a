namespace TauCluster.Engine.Tests;

/// <summary>Continuous batching changes no session's numbers: the same tokens and logits, bitwise, alone or in a batch.</summary>
public sealed class BatchingTests
{
    private static (int[] Tokens, float[] LastLogits) Alone(TauModel model, TauAttentionPath path, int[] prompt, ulong seed, int count)
    {
        var session = new InferenceSession(model, tauPath: path);
        var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.9, 20, 0.95, seed));
        var logits = session.Append(prompt);
        var tokens = new List<int>();
        for (int i = 0; i < count; i++)
        {
            tokens.Add(sampler.Sample(logits));
            logits = session.Append(tokens[^1]);
        }
        return (tokens.ToArray(), logits.ToArray());
    }

    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index, 64)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense, 16)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense, 16)]
    public async Task Sessions_decode_the_same_bitwise_alone_or_in_a_batch(AttentionKind attention, TauAttentionPath path, int sessions)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 4, 2, embd: 64, vocab: 300), 31);
        var prompts = Enumerable.Range(0, sessions).Select(i => TestSupport.RandomTokens(5 + i % 23, 300, (ulong)i)).ToArray();
        const int count = 24;
        var alone = Enumerable.Range(0, sessions).Select(i => Alone(model, path, prompts[i], (ulong)i + 100, count)).ToArray();

        using var batcher = new DecodeBatcher(maxBatch: 64);
        var runs = Enumerable.Range(0, sessions).Select(i =>
        {
            var session = new InferenceSession(model, tauPath: path);
            var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.9, 20, 0.95, (ulong)i + 100));
            return (Session: session, Sampler: sampler, Tokens: new List<int> { sampler.Sample(session.Append(prompts[i])) });
        }).ToArray();

        // Every session's first step is lined up into one forward pass of all of them; later steps batch as they come.
        ValueTask<int>[] firstSteps;
        using (batcher.HoldPasses())
            firstSteps = runs.Select(r => batcher.Step(r.Session, r.Tokens[^1], r.Sampler)).ToArray();
        for (int i = 0; i < sessions; i++) runs[i].Tokens.Add(await firstSteps[i]);
        Assert.Equal(sessions, batcher.LargestBatch);

        var batched = await Task.WhenAll(runs.Select(r => Task.Run(async () =>
        {
            while (r.Tokens.Count < count) r.Tokens.Add(await batcher.Step(r.Session, r.Tokens[^1], r.Sampler));
            r.Session.Append(r.Tokens[^1]);   // the last token, alone, for its logits
            return (Tokens: r.Tokens.ToArray(), LastLogits: r.Session.Logits.ToArray());
        })));

        for (int i = 0; i < sessions; i++)
        {
            Assert.Equal(alone[i].Tokens, batched[i].Tokens);
            Assert.Equal(alone[i].LastLogits, batched[i].LastLogits);
        }
        Assert.Equal(sessions, batcher.LargestBatch);
        Assert.Equal(sessions * (count - 1), batcher.Steps);
    }

    [Fact]
    public async Task A_bad_token_fails_only_its_own_step()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, vocab: 50), 3);
        using var batcher = new DecodeBatcher();
        var session = new InferenceSession(model);
        var sampler = new Sampler(50, SamplingOptions.Greedy);
        session.Append([1, 2]);
        await Assert.ThrowsAsync<TokenOutOfRangeException>(() => batcher.Step(session, 50, sampler).AsTask());
        Assert.InRange(await batcher.Step(session, 3, sampler), 0, 49);
        Assert.Equal(3, session.Length);
    }
}
