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
        var session = new InferenceSession(model);
        var sampler = new Sampler(config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
        session.Reserve(1200);
        var logits = session.Append(TestSupport.RandomTokens(900, config.VocabSize, 2));
        for (int i = 0; i < 20; i++) logits = session.Append(sampler.Sample(logits));   // warm up: JIT tiers, thread statics

        long threadBefore = GC.GetAllocatedBytesForCurrentThread();
        long processBefore = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 200; i++) logits = session.Append(sampler.Sample(logits));
        long threadBytes = GC.GetAllocatedBytesForCurrentThread() - threadBefore;
        long processBytes = GC.GetTotalAllocatedBytes(precise: true) - processBefore;

        Assert.Equal(0, threadBytes);
        // the whole process, kernel workers included; a little slack for the runtime's own background work
        Assert.True(processBytes < 200 * 8, $"{processBytes} bytes allocated in the process over 200 decode steps");
    }
}
