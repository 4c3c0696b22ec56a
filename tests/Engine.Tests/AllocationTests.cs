namespace TauCluster.Engine.Tests;

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A decode step allocates nothing once the session has reserved room: measured, not assumed.</summary>
[Collection(nameof(AllocationCollection))]
public sealed class AllocationTests
{
    /// <summary>
    /// The λ index allocates once per 64 keys, when a full tail becomes a run (and runs merge), like a growing vector;
    /// the steps in between allocate nothing. The dense paths allocate nothing at all once reserved.
    /// </summary>
    [Theory]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Index, 59)]
    [InlineData(AttentionKind.Tau, TauAttentionPath.Dense, 200)]
    [InlineData(AttentionKind.Causal, TauAttentionPath.Dense, 200)]
    public void Decode_steps_allocate_nothing(AttentionKind attention, TauAttentionPath path, int steps)
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

        Assert.Equal(900, session.Length);   // the next 59 steps stay inside the λ index's block that ends at 960
        long workersBefore = pool.WorkerAllocatedBytes, chunksBefore = pool.WorkerChunks;
        long threadBefore = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < steps; i++) logits = session.Append(sampler.Sample(logits));
        long threadBytes = GC.GetAllocatedBytesForCurrentThread() - threadBefore;
        long workerBytes = pool.WorkerAllocatedBytes - workersBefore;

        Assert.Equal(0, threadBytes);    // the decoding thread: forward pass, cache append, attention, sampling
        Assert.Equal(0, workerBytes);    // the kernel pool's threads, which ran the parallel chunks
        Assert.True(pool.WorkerChunks > chunksBefore, "the kernel pool's workers took no part: the parallel path went untested");
    }
}
