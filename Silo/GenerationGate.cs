namespace TauCluster.Silo;

/// <summary>
/// Admission for generations on this silo: a fixed number run, a bounded number wait, and the rest are turned away
/// (503) rather than piling up latency for everyone.
/// </summary>
public sealed class GenerationGate(HttpApiOptions options) : Grains.IGenerationAdmission
{
    private readonly SemaphoreSlim slots = new(options.MaxConcurrentGenerations, options.MaxConcurrentGenerations);
    private readonly object watchersLock = new();
    private readonly List<(Func<GenerationGate, bool> Condition, TaskCompletionSource Reached)> watchers = [];
    private int waiting;
    private bool draining;

    public int Waiting => Volatile.Read(ref waiting);

    /// <summary>Generations holding a slot now.</summary>
    public int Running => options.MaxConcurrentGenerations - slots.CurrentCount;

    /// <summary>False once the silo has begun to shut down: from then on every generation is refused (503).</summary>
    public bool Admitting => !Volatile.Read(ref draining);

    /// <summary>Refuses every generation from now on, those still queued included; those running go on.</summary>
    public void StopAdmitting()
    {
        Volatile.Write(ref draining, true);
        Changed();
    }

    /// <summary>A lease to dispose when the generation ends; a full queue or a draining silo is a 503.</summary>
    public async Task<IDisposable> Enter(CancellationToken cancellation)
    {
        if (!Admitting) throw Draining();
        if (slots.Wait(0)) return AdmittedUnlessDraining();
        if (Interlocked.Increment(ref waiting) > options.MaxQueuedGenerations)
        {
            Interlocked.Decrement(ref waiting);
            throw new ApiError(503, "the silo is at capacity; retry shortly", code: "overloaded", type: "server_error");
        }
        try
        {
            Changed();
            await slots.WaitAsync(cancellation);
            return AdmittedUnlessDraining();
        }
        finally
        {
            Interlocked.Decrement(ref waiting);
            Changed();
        }
    }

    /// <summary>
    /// Completes once <paramref name="condition"/> holds of the gate, checked now and after every admission, queueing
    /// and release: what a drain waits for (nothing running), and what tests wait on instead of polling /metrics.
    /// </summary>
    public Task When(Func<GenerationGate, bool> condition)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (watchersLock) watchers.Add((condition, reached));
        Changed();
        return reached.Task;
    }

    private Lease AdmittedUnlessDraining()
    {
        if (!Admitting)
        {
            slots.Release();
            throw Draining();
        }
        Changed();
        return new Lease(this);
    }

    private static ApiError Draining() =>
        new(503, "this silo is shutting down and takes no new generations; retry, another silo will serve it", code: "draining", type: "server_error");

    private void Changed()
    {
        lock (watchersLock)
        {
            if (watchers.Count == 0) return;
            for (int i = watchers.Count - 1; i >= 0; i--)
                if (watchers[i].Condition(this))
                {
                    watchers[i].Reached.TrySetResult();
                    watchers.RemoveAt(i);
                }
        }
    }

    private sealed class Lease(GenerationGate gate) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) != 0) return;
            gate.slots.Release();
            gate.Changed();
        }
    }
}
