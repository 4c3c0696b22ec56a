namespace TauCluster.Engine.Tests;

/// <summary>
/// Continuous batching changes no session's numbers: the same tokens and logits, bitwise, alone or in a batch, for
/// decode steps and for prompts run a block per pass beside them.
/// </summary>
public sealed class BatchingTests
{
    private static (int[] Tokens, float[] LastLogits) Alone(TauModel model, TauAttentionPath path, int[] prompt, ulong seed, int count) =>
        TestSupport.DecodeAlone(model, path, prompt, new SamplingOptions(0.9, 20, 0.95, seed), count);

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

        using var workers = new ComputeWorkers(maxBatch: 64);
        var worker = workers.For(model);
        var runs = Enumerable.Range(0, sessions).Select(i =>
        {
            var session = new InferenceSession(model, tauPath: path);
            var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.9, 20, 0.95, (ulong)i + 100));
            return (Session: session, Sampler: sampler, Tokens: new List<int> { sampler.Sample(session.Append(prompts[i])) });
        }).ToArray();

        // Every session's first step is lined up into one forward pass of all of them; later steps batch as they come.
        ValueTask<int>[] firstSteps;
        using (worker.HoldPasses())
            firstSteps = runs.Select(r => worker.Decode(r.Session, r.Tokens[^1], r.Sampler)).ToArray();
        for (int i = 0; i < sessions; i++) runs[i].Tokens.Add(await firstSteps[i]);
        Assert.Equal(sessions, worker.LargestBatch);

        var batched = await Task.WhenAll(runs.Select(r => Task.Run(async () =>
        {
            while (r.Tokens.Count < count) r.Tokens.Add(await worker.Decode(r.Session, r.Tokens[^1], r.Sampler));
            r.Session.Append(r.Tokens[^1]);   // the last token, alone, for its logits
            return (Tokens: r.Tokens.ToArray(), LastLogits: r.Session.Logits.ToArray());
        })));

        for (int i = 0; i < sessions; i++)
        {
            Assert.Equal(alone[i].Tokens, batched[i].Tokens);
            Assert.Equal(alone[i].LastLogits, batched[i].LastLogits);
        }
        Assert.Equal(sessions, worker.LargestBatch);
        Assert.Equal(sessions * (count - 1), worker.Steps);
    }

    [Fact]
    public async Task A_bad_token_fails_only_its_own_step()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, vocab: 50), 3);
        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var sampler = new Sampler(50, SamplingOptions.Greedy);
        session.Append([1, 2]);
        await Assert.ThrowsAsync<TokenOutOfRangeException>(() => worker.Decode(session, 50, sampler).AsTask());
        Assert.InRange(await worker.Decode(session, 3, sampler), 0, 49);
        Assert.Equal(3, session.Length);
    }

    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense)]
    public async Task A_long_prompt_goes_a_block_per_pass_beside_other_sessions_decode_steps_and_is_bitwise_the_prompt_alone(AttentionKind attention, TauAttentionPath path)
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(attention, 4, 2, embd: 64, vocab: 300, sequenceLen: 1024), 37);
        var prompt = TestSupport.RandomTokens(2 * InferenceSession.PrefillBlock + 88, 300, 5);   // three blocks: 256, 256, 88
        var decoderPrompts = Enumerable.Range(0, 3).Select(i => TestSupport.RandomTokens(7 + i, 300, (ulong)i + 40)).ToArray();
        const int count = 6;
        var alone = Alone(model, path, prompt, 9, count);
        var decodersAlone = decoderPrompts.Select((p, i) => Alone(model, path, p, (ulong)i + 50, count)).ToArray();

        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model, tauPath: path);
        var sampler = new Sampler(300, new SamplingOptions(0.9, 20, 0.95, 9));
        var decoders = decoderPrompts.Select((p, i) =>
        {
            var decoder = new InferenceSession(model, tauPath: path);
            var decoderSampler = new Sampler(300, new SamplingOptions(0.9, 20, 0.95, (ulong)i + 50));
            return (Session: decoder, Sampler: decoderSampler, Tokens: new List<int> { decoderSampler.Sample(decoder.Append(p)) });
        }).ToArray();

        // Pass by pass: each holds one block of the prompt and one decode step of every other session.
        ValueTask<int> prefill;
        using (var hold = worker.HoldPasses())
        {
            prefill = worker.Prefill(session, prompt, sampler);
            for (int pass = 1; pass <= 3; pass++)
            {
                var steps = decoders.Select(d => worker.Decode(d.Session, d.Tokens[^1], d.Sampler)).ToArray();
                hold.Allow();
                for (int i = 0; i < decoders.Length; i++) decoders[i].Tokens.Add(await steps[i]);
                Assert.Equal(pass, worker.Batches);
                if (pass < 3) Assert.False(prefill.IsCompleted, $"the prompt finished in {pass} passes");
            }
        }
        var tokens = new List<int> { await prefill };
        Assert.Equal(3, worker.PrefillChunks);
        Assert.Equal(3 * decoders.Length, worker.Steps);
        Assert.Equal(decoders.Length + 1, worker.LargestBatch);
        Assert.Equal(prompt.Length, session.Length);

        // The session goes on decoding through the worker beside the others, as it would alone.
        while (tokens.Count < count)
        {
            var steps = decoders.Select(d => d.Tokens.Count < count ? worker.Decode(d.Session, d.Tokens[^1], d.Sampler) : ValueTask.FromResult(-1)).ToArray();
            tokens.Add(await worker.Decode(session, tokens[^1], sampler));
            for (int i = 0; i < decoders.Length; i++) if (await steps[i] is >= 0 and var next) decoders[i].Tokens.Add(next);
        }
        session.Append(tokens[^1]);
        Assert.Equal(alone.Tokens, tokens);
        Assert.Equal(alone.LastLogits, session.Logits.ToArray());
        for (int i = 0; i < decoders.Length; i++)
        {
            decoders[i].Session.Append(decoders[i].Tokens[^1]);
            Assert.Equal(decodersAlone[i].Tokens, decoders[i].Tokens);
            Assert.Equal(decodersAlone[i].LastLogits, decoders[i].Session.Logits.ToArray());
        }
    }

    [Fact]
    public async Task Prompts_of_several_sessions_share_passes_within_the_row_budget_and_give_what_Append_gives()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 4, 2, embd: 64, vocab: 300), 41);
        int[] lengths = [30, 300, 40, 50];
        var prompts = lengths.Select((n, i) => TestSupport.RandomTokens(n, 300, (ulong)i + 60)).ToArray();
        var alone = prompts.Select(p => new InferenceSession(model).Append(p).ToArray()).ToArray();

        using var workers = new ComputeWorkers(maxBatch: 64);
        var worker = workers.For(model);
        var sessions = prompts.Select(_ => new InferenceSession(model)).ToArray();
        ValueTask<int>[] prefills;
        using (worker.HoldPasses())
            prefills = sessions.Select((s, i) => worker.Prefill(s, prompts[i], sampler: null)).ToArray();
        foreach (var prefill in prefills) Assert.Equal(-1, await prefill);

        // 30 + 256 fit in 320 rows and the 40 does not; then the other 44 of the 300, the 40 and the 50.
        Assert.Equal(2, worker.Batches);
        Assert.Equal(5, worker.PrefillChunks);
        Assert.Equal(3, worker.LargestBatch);
        for (int i = 0; i < sessions.Length; i++)
        {
            Assert.Equal(prompts[i], sessions[i].Tokens);
            Assert.Equal(alone[i], sessions[i].Logits.ToArray());
        }
    }

    [Fact]
    public async Task A_session_has_one_step_in_flight()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, vocab: 50), 3);
        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var sampler = new Sampler(50, SamplingOptions.Greedy);
        ValueTask<int> first;
        using (worker.HoldPasses())
        {
            first = worker.Prefill(session, new[] { 1, 2, 3 }, sampler);
            await Assert.ThrowsAsync<InvalidOperationException>(() => worker.Decode(session, 4, sampler).AsTask());
        }
        Assert.InRange(await first, 0, 49);
        Assert.InRange(await worker.Decode(session, 4, sampler), 0, 49);
        Assert.Equal(4, session.Length);
    }

    [Fact]
    public async Task Past_a_full_batch_sessions_wait_in_arrival_order_and_each_gets_one_step_per_round()
    {
        const int maxBatch = 4, groups = 3, sessions = groups * maxBatch, rounds = 3;
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau, vocab: 300), 17);
        using var workers = new ComputeWorkers(maxBatch);
        var worker = workers.For(model);
        var runs = Enumerable.Range(0, sessions).Select(i =>
        {
            var session = new InferenceSession(model);
            var sampler = new Sampler(300, new SamplingOptions(0.9, 20, 0.95, (ulong)i));
            return (Session: session, Sampler: sampler, First: sampler.Sample(session.Append(TestSupport.RandomTokens(4, 300, (ulong)i))));
        }).ToArray();
        var done = new int[sessions];

        async Task WaitFor(Func<bool> condition, string what)
        {
            for (var clock = System.Diagnostics.Stopwatch.StartNew(); !condition(); await Task.Delay(1))
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"timed out waiting until {what}");
        }

        using var hold = worker.HoldPasses();
        // Arrival order is session order: each first step is queued before the next session's.
        var first = runs.Select(r => worker.Decode(r.Session, r.First, r.Sampler)).ToArray();
        var loops = runs.Select((r, i) => Task.Run(async () =>
        {
            int token = await first[i];
            for (int round = 1; ; round++)
            {
                Interlocked.Increment(ref done[i]);
                if (round == rounds) return;
                token = await worker.Decode(r.Session, token, r.Sampler);
            }
        })).ToArray();

        for (int pass = 0; pass < groups * rounds; pass++)
        {
            hold.Allow();
            await WaitFor(() => done.Sum() == (pass + 1) * maxBatch, $"pass {pass + 1} completed");
            // Pass p served group p mod 3: the first four waiting, in arrival order; nobody was passed over.
            var expected = Enumerable.Range(0, sessions).Select(i => pass < i / maxBatch ? 0 : (pass - i / maxBatch) / groups + 1);
            Assert.Equal(expected, done);
            await WaitFor(() => worker.Waiting == done.Count(d => d < rounds), $"the sessions of pass {pass + 1} queued again");
        }
        await Task.WhenAll(loops);
        Assert.Equal(groups * rounds, worker.Batches);
        Assert.Equal(maxBatch, worker.LargestBatch);
    }
}
