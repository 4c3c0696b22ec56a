using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace TauCluster.Engine;

/// <summary>
/// One accelerator that runs the ILGPU kernels, opened once per device and shared by every model on it: a CUDA GPU,
/// or ILGPU's CPU accelerator (which runs the same kernels with threads acting as a GPU's, so that tests without a GPU
/// check the kernels a GPU runs). Every use of the accelerator goes through <see cref="Gate"/>: its stream is not
/// meant for several threads at once.
/// </summary>
public sealed class IlgpuDevice : IDisposable
{
    private readonly Context context;

    private IlgpuDevice(ComputeDevice device, Context context, Accelerator accelerator)
    {
        Device = device;
        this.context = context;
        Accelerator = accelerator;
        // Powers of two (the kernels reduce in halves) within what the device allows: on a GPU, groups of 256 threads and
        // products in 16 × 16 tiles; ILGPU's CPU accelerator runs a group's threads as threads of its own, so there the
        // fewest that still exercise the reductions (a barrier there costs microseconds per thread).
        bool cpu = device.Kind == DeviceKind.IlgpuCpu;
        GroupSize = Math.Min(cpu ? 2 : 256, PowerOfTwoAtMost(accelerator.MaxNumThreadsPerGroup));
        Tile = Math.Min(cpu ? 1 : DeviceKernels.MaxTile, PowerOfTwoAtMost((int)Math.Sqrt(accelerator.MaxNumThreadsPerGroup)));
        // Enough groups to fill every multiprocessor several times over; the kernels stride over the rest.
        Groups = cpu ? 2 : Math.Max(1, accelerator.NumMultiprocessors) * 8;
        Kernels = new DeviceKernels(accelerator);
    }

    public ComputeDevice Device { get; }
    public string Name => Accelerator.Name;
    public long MemoryBytes => Accelerator.MemorySize;
    internal Accelerator Accelerator { get; }
    internal DeviceKernels Kernels { get; }
    /// <summary>Threads of a group, a product's tile width, and groups per launch (set before the first pass; tests widen them).</summary>
    internal int GroupSize { get; set; }
    internal int Tile { get; set; }
    internal int Groups { get; set; }

    /// <summary>A launch of groups of <see cref="GroupSize"/> threads over <paramref name="items"/> items, a group's worth each at most.</summary>
    internal KernelConfig Spread(int items) => new(Math.Clamp((items + GroupSize - 1) / GroupSize, 1, Groups), GroupSize);

    /// <summary>A launch of a group per item, as many at once as the device runs.</summary>
    internal KernelConfig GroupPerItem(int items) => new(Math.Clamp(items, 1, Groups), GroupSize);
    internal Lock Gate { get; } = new();

    /// <summary>
    /// Opens <paramref name="device"/>; a device that is not there is an error naming what there is, never a fall-back.
    /// The Algorithms library gives the PTX backend its exp and sqrt (the CPU accelerator runs .NET's own).
    /// </summary>
    public static IlgpuDevice Open(ComputeDevice device)
    {
        if (!device.IsAccelerator) throw new ArgumentException("the CPU runs the SIMD kernels, not ILGPU's", nameof(device));
        ResolveDriverLibraries();
        if (device.Kind == DeviceKind.IlgpuCpu)
        {
            var cpu = Context.Create(b => b.CPU(CPUDeviceKind.Default).EnableAlgorithms());
            return new IlgpuDevice(device, cpu, cpu.GetCPUDevice(0).CreateCPUAccelerator(cpu));
        }
        Context context;
        try
        {
            context = Context.Create(b => b.Cuda().EnableAlgorithms());
        }
        catch (Exception e)
        {
            throw new InvalidOptionsException($"device {device}: the CUDA driver could not be loaded ({e.Message})");
        }
        var gpus = context.GetCudaDevices();
        if (device.Index >= gpus.Count)
        {
            context.Dispose();
            throw new InvalidOptionsException(gpus.Count == 0
                ? $"device {device}: no CUDA device found (is the NVIDIA driver installed, and the GPU passed to this container?)"
                : $"device {device}: there are only {gpus.Count} CUDA devices (cuda:0 … cuda:{gpus.Count - 1})");
        }
        return new IlgpuDevice(device, context, gpus[device.Index].CreateAccelerator(context));
    }

    private static int resolverSet;

    /// <summary>
    /// ILGPU asks for the driver as "cuda" (libcuda.so), which many machines and containers only have as libcuda.so.1 (the
    /// driver installs the versioned name; the unversioned link comes with the CUDA toolkit).
    /// </summary>
    private static void ResolveDriverLibraries()
    {
        if (Interlocked.Exchange(ref resolverSet, 1) != 0 || !OperatingSystem.IsLinux()) return;
        NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, static (name, assembly, path) =>
        {
            string[] candidates = name switch
            {
                "cuda" or "nvcuda" or "libcuda" => ["libcuda.so", "libcuda.so.1"],
                "nvml" or "libnvidia-ml" => ["libnvidia-ml.so", "libnvidia-ml.so.1"],
                _ => [],
            };
            foreach (var candidate in candidates)
                if (NativeLibrary.TryLoad(candidate, assembly, path, out var handle)) return handle;
            return IntPtr.Zero;
        });
    }

    private static int PowerOfTwoAtMost(int n) => n <= 1 ? 1 : 1 << (31 - int.LeadingZeroCount(n));

    public void Dispose()
    {
        Accelerator.Dispose();
        context.Dispose();
    }
}
