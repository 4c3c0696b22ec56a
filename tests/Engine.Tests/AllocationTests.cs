namespace TauCluster.Engine.Tests;

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A decode step allocates nothing once the session has reserved room: measured, not assumed.</summary>
[Collection(nameof(AllocationCollection))]
public sealed class AllocationTests
{
    /// <summary>
    /// Decoding runs in windows of steps, and one whole window must allocate nothing, on the decoding thread and on
    /// the kernel pool's threads. (A window may catch the runtime's one-time work, such as a method reaching its
    /// optimised tier under load; an allocation per token would show in every window.) The λ index allocates once per
    /// 64 keys, when its tail becomes a run, like a growing vector, so its windows stay inside one such block.
    /// </summary>
    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index, 19)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense, 60)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense, 60)]
    public void Decode_steps_allocate_nothing(AttentionKind attention, TauAttentionPath path, int stepsPerWindow)
    {
        // big enough that the kernel pool really forks (lm_head and attention pass the parallel thresholds)
        var config = TestSupport.SmallConfig(attention, 2, 1, embd: 128, layers: 2, vocab: 20000, sequenceLen: 2048);
        var model = TauModel.CreateRandom(config, 1);
        var pool = new KernelPool(workers: 2);
        var session = new InferenceSession(model, pool: pool, tauPath: path);
        var sampler = new Sampler(config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
        session.Reserve(1200);
        var logits = session.Append(TestSupport.RandomTokens(850, config.VocabSize, 2));
        for (int i = 0; i < 50; i++) logits = session.Append(sampler.Sample(logits));   // warm up: JIT tiers, thread statics, rare branches
        Assert.Equal(900, session.Length);   // three windows of 19 stay inside the λ index's block that ends at 960

        var windows = new List<(long Thread, long Workers)>();
        long chunksBefore = pool.WorkerChunks;
        for (int window = 0; window < 3; window++)
        {
            long workersBefore = pool.WorkerAllocatedBytes;
            long threadBefore = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < stepsPerWindow; i++) logits = session.Append(sampler.Sample(logits));
            long threadBytes = GC.GetAllocatedBytesForCurrentThread() - threadBefore;
            windows.Add((threadBytes, pool.WorkerAllocatedBytes - workersBefore));
            if (threadBytes == 0 && windows[^1].Workers == 0) break;
        }

        Assert.True(windows[^1] == (0, 0),
            $"every window of {stepsPerWindow} decode steps allocated (decoding thread, kernel threads): {string.Join(", ", windows)}");
        Assert.True(pool.WorkerChunks > chunksBefore, "the kernel pool's workers took no part: the parallel path went untested");
    }
}
