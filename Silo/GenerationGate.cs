namespace TauCluster.Silo;

/// <summary>
/// Admission for generations on this silo: a fixed number run, a bounded number wait, and the rest are turned away
/// (503) rather than piling up latency for everyone.
/// </summary>
public sealed class GenerationGate(HttpApiOptions options)
{
    private readonly SemaphoreSlim slots = new(options.MaxConcurrentGenerations, options.MaxConcurrentGenerations);
    private int waiting;

    public int Waiting => Volatile.Read(ref waiting);

    /// <summary>A lease to dispose when the generation ends, or null when the queue is full.</summary>
    public async Task<IDisposable?> Enter(CancellationToken cancellation)
    {
        if (slots.Wait(0)) return new Lease(slots);
        if (Interlocked.Increment(ref waiting) > options.MaxQueuedGenerations)
        {
            Interlocked.Decrement(ref waiting);
            return null;
        }
        try
        {
            await slots.WaitAsync(cancellation);
            return new Lease(slots);
        }
        finally
        {
            Interlocked.Decrement(ref waiting);
        }
    }

    private sealed class Lease(SemaphoreSlim slots) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 0) slots.Release();
        }
    }
}
