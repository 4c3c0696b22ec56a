using System.Collections.Concurrent;

namespace TauCluster.Engine;

/// <summary>
/// A silo's compute: one <see cref="ComputeWorker"/> per (model, device), made on first use, through which every
/// session of that model runs its steps. Its totals, over every worker, are what the silo's metrics report.
/// </summary>
public sealed class ComputeWorkers : IDisposable
{
    private readonly ConcurrentDictionary<(TauModel Model, ComputeDevice Device), ComputeWorker> workers = new();
    private readonly KernelPool pool;
    private volatile bool disposed;

    public ComputeWorkers(int maxBatch = 64, KernelPool? pool = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        MaxBatch = maxBatch;
        this.pool = pool ?? KernelPool.Shared;
    }

    /// <summary>The most decode steps one forward pass takes.</summary>
    public int MaxBatch { get; }

    /// <summary>The worker that runs <paramref name="model"/> on the CPU, the only device today.</summary>
    public ComputeWorker For(TauModel model) => For(model, ComputeDevice.Cpu);

    public ComputeWorker For(TauModel model, ComputeDevice device)
    {
        if (workers.TryGetValue((model, device), out var worker)) return worker;
        ObjectDisposedException.ThrowIf(disposed, this);
        if (device != ComputeDevice.Cpu) throw new InvalidOptionsException($"no compute device '{device}': only 'cpu' is built");
        return workers.GetOrAdd((model, device), static (key, owner) => new ComputeWorker(key.Model, key.Device, owner.MaxBatch, owner.pool), this);
    }

    /// <summary>Steps waiting for their next forward pass, over every worker.</summary>
    public int Waiting => workers.Values.Sum(w => w.Waiting);

    /// <summary>Forward passes run, decode steps and prefill chunks they held, and the most lanes one pass held.</summary>
    public long Batches => workers.Values.Sum(w => w.Batches);
    public long Steps => workers.Values.Sum(w => w.Steps);
    public long PrefillChunks => workers.Values.Sum(w => w.PrefillChunks);
    public int LargestBatch => workers.Values.Select(w => w.LargestBatch).DefaultIfEmpty(0).Max();

    public void Dispose()
    {
        disposed = true;
        foreach (var worker in workers.Values) worker.Dispose();
    }
}
