using System.Collections.Concurrent;

namespace TauCluster.Engine;

/// <summary>
/// A silo's compute on its device (<c>Tau:Device</c>): one <see cref="ComputeWorker"/> per model, made on first use,
/// through which every session of that model runs its steps, and on an accelerator each model's weights and cache pool
/// there. Its totals, over every worker, are what the silo's metrics report.
/// </summary>
public sealed class ComputeWorkers : IDisposable
{
    /// <summary>The cache pool of a model on ILGPU's CPU accelerator, which tests use: small, since it is host memory.</summary>
    public const long CpuAcceleratorCacheBytes = 64L << 20;

    /// <summary>The share of a GPU's memory that a model's cache pool takes when none is configured.</summary>
    public const double GpuCacheShare = 0.4;

    private readonly ConcurrentDictionary<TauModel, ComputeWorker> workers = new();
    private readonly ConcurrentDictionary<TauModel, Lazy<DeviceModel>> deviceModels = new();
    private readonly KernelPool pool;
    private readonly long deviceCacheBytes;
    private volatile bool disposed;

    /// <param name="device">Where the kernels run; an accelerator is opened here, so a missing one fails at start.</param>
    /// <param name="deviceCacheBytes">Each model's cache pool on an accelerator; 0 for the default.</param>
    public ComputeWorkers(int maxBatch = 64, KernelPool? pool = null, ComputeDevice device = default, long deviceCacheBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(deviceCacheBytes);
        MaxBatch = maxBatch;
        this.pool = pool ?? KernelPool.Shared;
        Device = device;
        if (device.IsAccelerator)
        {
            Accelerator = IlgpuDevice.Open(device);
            this.deviceCacheBytes = deviceCacheBytes > 0 ? deviceCacheBytes
                : device.Kind == DeviceKind.IlgpuCpu ? CpuAcceleratorCacheBytes : (long)(Accelerator.MemoryBytes * GpuCacheShare);
        }
    }

    /// <summary>The most decode steps one forward pass takes.</summary>
    public int MaxBatch { get; }

    public ComputeDevice Device { get; }

    /// <summary>The accelerator the kernels run on; null on the CPU.</summary>
    public IlgpuDevice? Accelerator { get; }

    /// <summary>The models on the accelerator, with their weights and cache pools (none on the CPU).</summary>
    public IEnumerable<DeviceModel> DeviceModels => deviceModels.Values.Where(m => m.IsValueCreated).Select(m => m.Value);

    /// <summary><paramref name="model"/> on this silo's accelerator, its weights uploaded on first use; null on the CPU.</summary>
    public DeviceModel? DeviceModelOf(TauModel model)
    {
        if (Accelerator is null) return null;
        ObjectDisposedException.ThrowIf(disposed, this);
        return deviceModels.GetOrAdd(model, m => new Lazy<DeviceModel>(() => new DeviceModel(m, Accelerator, deviceCacheBytes))).Value;
    }

    /// <summary>A new session of <paramref name="model"/> on this silo's device.</summary>
    public InferenceSession NewSession(TauModel model, TaumodeSpec? domain = null, TauAttentionPath path = TauAttentionPath.Index) =>
        new(model, domain, pool, path, DeviceModelOf(model));

    /// <summary>The worker that runs <paramref name="model"/> on this silo's device.</summary>
    public ComputeWorker For(TauModel model)
    {
        if (workers.TryGetValue(model, out var worker)) return worker;
        ObjectDisposedException.ThrowIf(disposed, this);
        var onDevice = DeviceModelOf(model);
        return workers.GetOrAdd(model, static (m, state) => new ComputeWorker(m, state.Owner.Device, state.Owner.MaxBatch, state.Owner.pool, state.OnDevice),
            (Owner: this, OnDevice: onDevice));
    }

    /// <summary>Steps waiting for their next forward pass, over every worker.</summary>
    public int Waiting => workers.Values.Sum(w => w.Waiting);

    /// <summary>Forward passes run, decode steps and prefill chunks they held, and the most lanes one pass held.</summary>
    public long Batches => workers.Values.Sum(w => w.Batches);
    public long Steps => workers.Values.Sum(w => w.Steps);
    public long PrefillChunks => workers.Values.Sum(w => w.PrefillChunks);
    public int LargestBatch => workers.Values.Select(w => w.LargestBatch).DefaultIfEmpty(0).Max();

    /// <summary>Lanes of each worker's latest pass, added up: what the silo's batches hold now.</summary>
    public int LastBatch => workers.Values.Sum(w => w.LastBatch);

    public void Dispose()
    {
        disposed = true;
        foreach (var worker in workers.Values) worker.Dispose();
        foreach (var model in DeviceModels) model.Dispose();
        Accelerator?.Dispose();
    }
}
