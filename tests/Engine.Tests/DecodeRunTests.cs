namespace TauCluster.Engine.Tests;

/// <summary>
/// A run of decode steps at the compute worker (<see cref="ComputeWorker.Generate"/>) feeds each sampled token back
/// itself: the tokens are those of decoding step by step, a stop leaves the session as though only the tokens taken
/// had been made, and the run waits for a reader that falls a window behind.
/// </summary>
public sealed class DecodeRunTests
{
    private const ulong SeedBase = 500;

    private static SamplingOptions Sampling(int i) => new(0.9, 20, 0.95, SeedBase + (ulong)i);

    private static (int[] Tokens, float[] LastLogits) StepByStep(TauModel model, TauAttentionPath path, int[] prompt, int i, int count) =>
        TestSupport.DecodeAlone(model, path, prompt, Sampling(i), count);

    private static TauModel Model(AttentionKind attention) =>
        TauModel.CreateRandom(TestSupport.SmallConfig(attention, 2, 2, embd: 64, layers: 3, vocab: 300), 41);

    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index, 12)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense, 5)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense, 5)]
    public async Task Runs_of_many_sessions_generate_the_tokens_of_decoding_step_by_step(AttentionKind attention, TauAttentionPath path, int sessions)
    {
        var model = Model(attention);
        const int count = 40;   // past the window, so the runs pause and resume for readers that lag
        var prompts = Enumerable.Range(0, sessions).Select(i => TestSupport.RandomTokens(3 + i * 7 % 30, 300, (ulong)i)).ToArray();
        var expected = Enumerable.Range(0, sessions).Select(i => StepByStep(model, path, prompts[i], i, count)).ToArray();

        using var workers = new ComputeWorkers(maxBatch: 64);
        var worker = workers.For(model);
        var results = await Task.WhenAll(Enumerable.Range(0, sessions).Select(i => Task.Run(async () =>
        {
            var session = new InferenceSession(model, tauPath: path);
            var sampler = new Sampler(model.Config.VocabSize, Sampling(i));
            // Odd sessions hand the run their prompt; even ones prefill it first and start from its logits.
            var run = i % 2 == 1 ? worker.Generate(session, prompts[i], sampler, count) : Prefilled(worker, session, prompts[i], sampler, count);
            var tokens = new List<int>();
            for (int t = 0; t < count; t++)
            {
                tokens.Add(await run.Next());
                if (t % 9 == i % 9) await Task.Delay(20);   // a slow reader now and then
            }
            Assert.True(await run.Stop());
            Assert.Equal(prompts[i].Length + count - 1, session.Length);   // the last token is the next step's input
            session.Append(tokens[^1]);
            return (Tokens: tokens.ToArray(), LastLogits: session.Logits.ToArray());
        })));

        for (int i = 0; i < sessions; i++)
        {
            Assert.Equal(expected[i].Tokens, results[i].Tokens);
            Assert.Equal(expected[i].LastLogits, results[i].LastLogits);
        }
        Assert.True(worker.LargestBatch > 1, "no two runs ever shared a pass");
    }

    private static DecodeRun Prefilled(ComputeWorker worker, InferenceSession session, int[] prompt, Sampler sampler, int count)
    {
        session.Append(prompt);
        return worker.Generate(session, ReadOnlyMemory<int>.Empty, sampler, count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(SessionStep.RunWindow + 3)]
    public async Task A_stopped_run_leaves_the_session_as_though_only_the_taken_tokens_were_made(int taken)
    {
        var model = Model(AttentionKind.Tau);
        int[] prompt = TestSupport.RandomTokens(9, 300, 77);
        const int total = 48;
        var expected = StepByStep(model, TauAttentionPath.Index, prompt, 0, total).Tokens;

        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var sampler = new Sampler(model.Config.VocabSize, Sampling(0));
        var first = worker.Generate(session, prompt, sampler, total);
        var tokens = new List<int>();
        for (int t = 0; t < taken; t++) tokens.Add(await first.Next());
        await WaitForWindow(worker, taken);   // the worker has run ahead of the reader, as far as the window lets it
        Assert.True(await first.Stop());
        Assert.InRange(session.Length, prompt.Length + taken - 1, prompt.Length + taken);

        // The next run goes on from the tokens taken: the tokens the first one computed ahead are drawn again.
        var rest = worker.Generate(session, TokensToFeed(session, prompt, tokens), sampler, total - taken);
        for (int t = taken; t < total; t++) tokens.Add(await rest.Next());
        Assert.True(await rest.Stop());
        Assert.Equal(expected, tokens);
    }

    /// <summary>What the cache lacks of the prompt and the tokens taken: nothing, or the last taken token.</summary>
    private static int[] TokensToFeed(InferenceSession session, int[] prompt, List<int> taken) =>
        [.. prompt.Concat(taken).Skip(session.Length)];

    /// <summary>Waits until the worker's steps stop growing, a window ahead of <paramref name="taken"/> tokens at most.</summary>
    private static async Task WaitForWindow(ComputeWorker worker, int taken)
    {
        long last = -1;
        for (int i = 0; i < 200 && worker.Steps != last; i++)
        {
            last = worker.Steps;
            await Task.Delay(25);
        }
        Assert.InRange(worker.Steps, 0, taken + SessionStep.RunWindow);
    }

    [Fact]
    public async Task A_run_waits_for_a_reader_a_window_behind_then_goes_on()
    {
        var model = Model(AttentionKind.Tau);
        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var sampler = new Sampler(model.Config.VocabSize, Sampling(3));
        session.Append([5, 6, 7]);
        var run = worker.Generate(session, ReadOnlyMemory<int>.Empty, sampler, 100);

        // The first token came from the prompt's logits; each step makes one more, until the window is full.
        await WaitForWindow(worker, 0);
        Assert.Equal(SessionStep.RunWindow - 1, worker.Steps);
        await Task.Delay(100);
        Assert.Equal(SessionStep.RunWindow - 1, worker.Steps);

        for (int t = 0; t < 100; t++) await run.Next();
        Assert.True(await run.Stop());
        Assert.Equal(99, worker.Steps);
        Assert.Equal(3 + 99, session.Length);
    }

    [Fact]
    public async Task A_run_does_not_grow_past_the_context_and_refuses_more_tokens()
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, 2, 1, embd: 32, vocab: 50, sequenceLen: 12);
        var model = TauModel.CreateRandom(config, 5);
        using var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var run = worker.Generate(session, new[] { 1, 2, 3, 4 }, new Sampler(50, SamplingOptions.Greedy), 100);
        for (int t = 0; t < 9; t++) await run.Next();   // 4 prompt tokens + 9 generated: the 9th is never fed
        Assert.Throws<InvalidOperationException>(() => run.Next());
        Assert.True(await run.Stop());
        Assert.Equal(12, session.Length);
    }

    [Fact]
    public async Task A_reader_waiting_on_a_run_learns_that_its_worker_stopped()
    {
        var model = Model(AttentionKind.Tau);
        var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        var run = worker.Generate(session, new[] { 1, 2, 3 }, new Sampler(model.Config.VocabSize, Sampling(1)), 1000);
        await run.Next();
        workers.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
        {
            for (int t = 0; t < 1000; t++) await run.Next();
        });
        Assert.False(await run.Stop());   // a failed run still ends, and says that its cache is in no known state
        Assert.Throws<ObjectDisposedException>(() => worker.Generate(session, ReadOnlyMemory<int>.Empty, new Sampler(model.Config.VocabSize, Sampling(1)), 1));
    }

    [Fact]
    public async Task A_run_that_fails_after_the_last_token_taken_says_so_when_stopped()
    {
        var model = Model(AttentionKind.Tau);
        var workers = new ComputeWorkers();
        var worker = workers.For(model);
        var session = new InferenceSession(model);
        session.Append([1, 2, 3]);
        DecodeRun run;
        using (worker.HoldPasses())
        {
            // The first token comes from the prompt's logits at once; the step that feeds it back waits for a pass.
            run = worker.Generate(session, ReadOnlyMemory<int>.Empty, new Sampler(model.Config.VocabSize, Sampling(2)), 50);
            await run.Next();
            workers.Dispose();   // the queued step fails, and the reader, which asks for nothing more, never sees it
        }
        Assert.False(await run.Stop());
    }
}
