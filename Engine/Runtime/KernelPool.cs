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
    private readonly long[] workerAllocatedBytes;
    private readonly long[] workerChunks;
    private int busy;
    private IChunkedWork? work;
    private int chunkCount;
    private int nextChunk;
    private int activeWorkers;
    private Exception? failure;

    public KernelPool(int workers)
    {
        workerCount = Math.Max(0, workers);
        workerAllocatedBytes = new long[workerCount];
        workerChunks = new long[workerCount];
        for (int i = 0; i < workerCount; i++)
        {
            int index = i;
            new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"tau-kernel-{i}" }.Start();
        }
    }

    /// <summary>Bytes the worker threads have allocated, as of their last job: a check that the kernels allocate nothing.</summary>
    internal long WorkerAllocatedBytes => Total(workerAllocatedBytes);

    /// <summary>Chunks the worker threads have run: shows that a job really was shared.</summary>
    internal long WorkerChunks => Total(workerChunks);

    private static long Total(long[] perWorker)
    {
        long total = 0;
        for (int i = 0; i < perWorker.Length; i++) total += Volatile.Read(ref perWorker[i]);
        return total;
    }

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

    private int Drain(IChunkedWork job, int chunks)
    {
        int i, ran = 0;
        while ((i = Interlocked.Increment(ref nextChunk) - 1) < chunks)
        {
            job.RunChunk(i);
            ran++;
        }
        return ran;
    }

    private void WorkerLoop(int index)
    {
        while (true)
        {
            wake.Wait();
            try { Volatile.Write(ref workerChunks[index], workerChunks[index] + Drain(work!, chunkCount)); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            finally
            {
                Volatile.Write(ref workerAllocatedBytes[index], GC.GetAllocatedBytesForCurrentThread());
                Interlocked.Decrement(ref activeWorkers);
            }
        }
    }
}
