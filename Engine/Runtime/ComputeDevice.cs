namespace TauCluster.Engine;

/// <summary>
/// Where a <see cref="ComputeWorker"/> runs a model's kernels. Only the CPU today (the SIMD kernels on the
/// <see cref="KernelPool"/>); a GPU is a further device, with a worker of its own per model.
/// </summary>
public readonly record struct ComputeDevice(string Name)
{
    public static ComputeDevice Cpu { get; } = new("cpu");

    public override string ToString() => Name;
}
