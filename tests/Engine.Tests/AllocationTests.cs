namespace TauCluster.Engine.Tests;

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A decode step allocates nothing once the session has reserved room: measured, not assumed.</summary>
[Collection(nameof(AllocationCollection))]
public sealed class AllocationTests
{
    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Decode_steps_allocate_nothing(AttentionKind attention)
    {
        // big enough that the kernel pool really forks (lm_head and attention pass the parallel thresholds)
        var config = TestSupport.SmallConfig(attention, 2, 1, embd: 128, layers: 2, vocab: 20000, sequenceLen: 2048);
        var model = TauModel.CreateRandom(config, 1);
        var pool = new KernelPool(workers: 2);
        var session = new InferenceSession(model, pool: pool);
        var sampler = new Sampler(config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
        session.Reserve(1200);
        var logits = session.Append(TestSupport.RandomTokens(900, config.VocabSize, 2));
        for (int i = 0; i < 20; i++) logits = session.Append(sampler.Sample(logits));   // warm up: JIT tiers, thread statics

        long workersBefore = pool.WorkerAllocatedBytes, chunksBefore = pool.WorkerChunks;
        long threadBefore = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++) logits = session.Append(sampler.Sample(logits));
        long threadBytes = GC.GetAllocatedBytesForCurrentThread() - threadBefore;
        long workerBytes = pool.WorkerAllocatedBytes - workersBefore;

        Assert.Equal(0, threadBytes);    // the decoding thread: forward pass, cache append, sampling
        Assert.Equal(0, workerBytes);    // the kernel pool's threads, which ran the parallel chunks
        Assert.True(pool.WorkerChunks > chunksBefore, "the kernel pool's workers took no part: the parallel path went untested");
    }
}
