namespace TauCluster.Engine;

/// <summary>What kind of device runs a model's kernels.</summary>
public enum DeviceKind
{
    /// <summary>The SIMD kernels on the <see cref="KernelPool"/>.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through ILGPU's CUDA backend (PTX it generates itself; only the driver is needed).</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator: the GPU kernels, run by threads that act as a GPU's. For tests, not for speed.</summary>
    IlgpuCpu,
}

/// <summary>
/// Where a <see cref="ComputeWorker"/> runs a model's kernels: <c>cpu</c>, <c>cuda</c> (the first GPU), <c>cuda:N</c>,
/// or <c>ilgpu-cpu</c>, as <c>Tau:Device</c> and <c>--device</c> spell them.
/// </summary>
public readonly record struct ComputeDevice(DeviceKind Kind, int Index = 0)
{
    public static ComputeDevice Cpu { get; } = new(DeviceKind.Cpu);

    /// <summary>Whether the device runs the ILGPU kernels (a GPU, or ILGPU's CPU accelerator) rather than the SIMD ones.</summary>
    public bool IsAccelerator => Kind != DeviceKind.Cpu;

    public string Name => Kind switch
    {
        DeviceKind.Cuda => $"cuda:{Index}",
        DeviceKind.IlgpuCpu => "ilgpu-cpu",
        _ => "cpu",
    };

    public override string ToString() => Name;

    /// <summary>Reads a device name; anything else is an error that lists the names there are.</summary>
    public static ComputeDevice Parse(string? name)
    {
        var text = (name ?? "cpu").Trim().ToLowerInvariant();
        if (text is "" or "cpu") return Cpu;
        if (text == "ilgpu-cpu") return new(DeviceKind.IlgpuCpu);
        if (text == "cuda") return new(DeviceKind.Cuda);
        if (text.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(text.AsSpan(5), System.Globalization.NumberStyles.None, null, out int index))
            return new(DeviceKind.Cuda, index);
        throw new InvalidOptionsException($"unknown device '{name}': expected cpu, cuda, cuda:N or ilgpu-cpu");
    }
}
