namespace TauCluster.Engine.Tests;

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A decode step allocates nothing once the session has reserved room: measured, not assumed.</summary>
[Collection(nameof(AllocationCollection))]
public sealed class AllocationTests
{
    /// <summary>Steps per measured window: the λ index allocates once per 64 keys, when its tail becomes a run, like a growing vector, so its windows stay inside one such block.</summary>
    public static TheoryData<AttentionKind, TauAttentionPath, int> Paths() => new()
    {
        { AttentionKind.Tau, TauAttentionPath.Index, 19 },
        { AttentionKind.Tau, TauAttentionPath.Dense, 60 },
        { AttentionKind.Causal, TauAttentionPath.Dense, 60 },
    };

    private const int Windows = 3;

    /// <summary>Big enough that the kernel pool really forks (lm_head and attention pass the parallel thresholds).</summary>
    private static (TauModel Model, KernelPool Pool, Sampler Sampler) Setup(AttentionKind attention)
    {
        var config = TestSupport.SmallConfig(attention, 2, 1, embd: 128, layers: 2, vocab: 20000, sequenceLen: 2048);
        return (TauModel.CreateRandom(config, 1), new KernelPool(workers: 2), new Sampler(config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1)));
    }

    /// <summary>A session filled to 850 tokens (by default) with room reserved for 1,400: after 50 steps of warm-up, 3 windows of 19 stay inside the λ index's block that ends at 960.</summary>
    private static InferenceSession Prefilled(TauModel model, KernelPool pool, TauAttentionPath path, ulong seed, int length = 850)
    {
        var session = new InferenceSession(model, pool: pool, tauPath: path);
        session.Reserve(1400);
        session.Append(TestSupport.RandomTokens(length, model.Config.VocabSize, seed));
        return session;
    }

    /// <summary>
    /// Every one of three windows of decode steps allocates nothing, on the decoding thread and on the kernel pool's
    /// threads, after a warm-up that takes the methods through their JIT tiers.
    /// </summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void Decode_steps_allocate_nothing(AttentionKind attention, TauAttentionPath path, int stepsPerWindow)
    {
        var (model, pool, sampler) = Setup(attention);
        var session = Prefilled(model, pool, path, 2);
        var logits = session.Logits;
        long chunksBefore = pool.WorkerChunks;
        for (int i = 0; i < 50; i++) logits = session.Append(sampler.Sample(logits));   // warm up: JIT tiers, thread statics, rare branches
        Assert.Equal(900, session.Length);

        var windows = new List<(long Thread, long Workers)>();
        for (int window = 0; window < Windows; window++)
        {
            long workersBefore = pool.WorkerAllocatedBytes;
            long threadBefore = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < stepsPerWindow; i++) logits = session.Append(sampler.Sample(logits));
            windows.Add((GC.GetAllocatedBytesForCurrentThread() - threadBefore, pool.WorkerAllocatedBytes - workersBefore));
        }

        Assert.True(windows.All(w => w == (0, 0)),
            $"windows of {stepsPerWindow} decode steps allocated (decoding thread, kernel threads): {string.Join(", ", windows)}");
        Assert.True(pool.WorkerChunks > chunksBefore, "the kernel pool's workers took no part: the parallel path went untested");
    }

    /// <summary>Windows of batched steps: 6 × 10 fit in one 64-key block of the λ index.</summary>
    public static TheoryData<AttentionKind, TauAttentionPath, int> BatchedPaths() => new()
    {
        { AttentionKind.Tau, TauAttentionPath.Index, 10 },
        { AttentionKind.Tau, TauAttentionPath.Dense, 40 },
        { AttentionKind.Causal, TauAttentionPath.Dense, 40 },
    };

    private const int BatchedWindows = 6;

    /// <summary>A managed object on x64: header, method table and one field, at least.</summary>
    private const int SmallestObjectBytes = 24;

    /// <summary>
    /// The silo's decode path, <see cref="ComputeWorker.Decode"/>, allocates nothing per step either: two sessions step
    /// together, and the worker's code (its passes, its sampling on the thread pool, each Decode call and each await of
    /// one) and the kernel pool's workers allocate less than one object per step in every window. Not zero: the first
    /// await of a step on a thread-pool thread that has not yet run a Task reads TaskScheduler.Current, and the runtime
    /// then makes that thread's Task statics, 32 bytes, once per thread (seen in about one window in three).
    /// </summary>
    [Theory]
    [MemberData(nameof(BatchedPaths))]
    public async Task Batched_decode_steps_allocate_nothing(AttentionKind attention, TauAttentionPath path, int stepsPerWindow)
    {
        var (model, pool, _) = Setup(attention);
        using var workers = new ComputeWorkers(pool: pool);
        var worker = workers.For(model);
        var first = Prefilled(model, pool, path, 2, length: 875);
        var second = Prefilled(model, pool, path, 3, length: 875);
        var firstSampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
        var secondSampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 2));
        long Allocated() => worker.AllocatedBytes + pool.WorkerAllocatedBytes;
        const int warmUp = 150;   // to length 1025: the windows stay inside the λ index's block that ends at 1088

        // One async method for the whole measurement, resumed by the worker's work items (a new method per window
        // would allocate its own state machine).
        var windows = await Task.Run(async () =>
        {
            int a = firstSampler.Sample(first.Logits), b = secondSampler.Sample(second.Logits);
            var allocated = new long[BatchedWindows];
            long before = 0;
            for (int step = -warmUp; step < BatchedWindows * stepsPerWindow; step++)
            {
                if (step >= 0 && step % stepsPerWindow == 0) before = Allocated();
                var stepA = worker.Decode(first, a, firstSampler);
                var stepB = worker.Decode(second, b, secondSampler);
                (a, b) = (await stepA, await stepB);
                if (step >= 0 && step % stepsPerWindow == stepsPerWindow - 1) allocated[step / stepsPerWindow] = Allocated() - before;
            }
            return allocated;
        });

        // An allocation per step, even of the smallest object, would put at least that much per step in every window.
        Assert.True(windows.All(w => w < SmallestObjectBytes * 2 * stepsPerWindow),
            $"windows of {stepsPerWindow} batched steps of two sessions allocated: {string.Join(", ", windows)} bytes");
        Assert.True(worker.LargestBatch == 2, $"the two sessions never shared a forward pass (largest batch {worker.LargestBatch})");
        Assert.Equal(875 + warmUp + BatchedWindows * stepsPerWindow, first.Length);
    }
}
