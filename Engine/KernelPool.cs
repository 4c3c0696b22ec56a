using System.Runtime.ExceptionServices;

namespace TauCluster.Engine;

/// <summary>A piece of work split into numbered chunks that may run on any thread, in any order.</summary>
public interface IChunkedWork
{
    void RunChunk(int chunk);
}

/// <summary>
/// An allocation-free fork-join pool for the kernels. One job runs at a time; a caller that finds the pool
/// busy (another session is using it) runs its chunks inline, so concurrent sessions still fill the cores.
/// Chunks are fixed by the caller, never by the number of threads, so results do not depend on who ran them.
/// </summary>
public sealed class KernelPool
{
    public static KernelPool Shared { get; } = new(Environment.ProcessorCount - 1);

    private readonly SemaphoreSlim wake = new(0);
    private readonly int workerCount;
    private int busy;
    private IChunkedWork? work;
    private int chunkCount;
    private int nextChunk;
    private int activeWorkers;
    private Exception? failure;

    public KernelPool(int workers)
    {
        workerCount = Math.Max(0, workers);
        for (int i = 0; i < workerCount; i++)
            new Thread(WorkerLoop) { IsBackground = true, Name = $"tau-kernel-{i}" }.Start();
    }

    /// <summary>Threads that take part in one job: the workers and the caller.</summary>
    public int Parallelism => workerCount + 1;

    public void For(int chunks, IChunkedWork job)
    {
        if (chunks <= 1 || workerCount == 0 || Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            for (int i = 0; i < chunks; i++) job.RunChunk(i);
            return;
        }
        try
        {
            int helpers = Math.Min(workerCount, chunks - 1);
            work = job;
            chunkCount = chunks;
            failure = null;
            Volatile.Write(ref activeWorkers, helpers);
            Volatile.Write(ref nextChunk, 0);
            wake.Release(helpers);
            try { Drain(job, chunks); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            // Every released worker must check out before the job's fields are reused.
            var spin = new SpinWait();
            while (Volatile.Read(ref activeWorkers) != 0) spin.SpinOnce(sleep1Threshold: -1);
            work = null;
            if (failure is { } error) ExceptionDispatchInfo.Throw(error);
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    private void Drain(IChunkedWork job, int chunks)
    {
        int i;
        while ((i = Interlocked.Increment(ref nextChunk) - 1) < chunks) job.RunChunk(i);
    }

    private void WorkerLoop()
    {
        while (true)
        {
            wake.Wait();
            try { Drain(work!, chunkCount); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            finally { Interlocked.Decrement(ref activeWorkers); }
        }
    }
}
