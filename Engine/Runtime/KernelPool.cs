using System.Diagnostics;
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
/// <para>
/// A decode step forks dozens of times, microseconds apart, and waking a parked thread costs more than most of those
/// jobs. So a worker that finishes a job spins for <see cref="SpinTime"/> watching for the next one, and only then parks
/// on the semaphore; a job wakes only the parked workers. A busy decode never parks, an idle pool costs nothing.
/// </para>
/// </summary>
public sealed class KernelPool
{
    public static KernelPool Shared { get; } = new(Environment.ProcessorCount - 1);

    /// <summary>
    /// How long an idle worker watches for the next job before it parks: longer than the gap between two decode steps
    /// of a session served through the cluster (sampling, the grain's turn, the next step's queueing: about a
    /// millisecond), since a step that finds the workers parked ran ~1 ms slower than one that found them spinning
    /// (one session through the cluster: 202 tokens/s with 200 µs, 251 with 2 ms, against 274 for the bare engine).
    /// The spin yields its core to any other runnable thread, so it slows none of that gap's work.
    /// </summary>
    private static readonly long SpinTime = Stopwatch.Frequency / 500;   // 2 ms

    private readonly SemaphoreSlim wake = new(0);
    private readonly int workerCount;
    private readonly long[] workerAllocatedBytes;
    private readonly long[] workerChunks;
    private int busy;
    private IChunkedWork? work;
    private int chunkCount;
    private int nextChunk;
    private int tickets;          // helpers the current job still wants; a worker that takes one joins it
    private int activeWorkers;    // helpers of the current job that have not checked out
    private long generation;      // one more for every job published
    private int parked;           // workers that announced they are about to park
    private long jobs;
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

    public int Workers => workerCount;

    /// <summary>Jobs that were shared with the workers: the fork-joins a step paid for.</summary>
    public long Jobs => Volatile.Read(ref jobs);

    private long overheadTicks;

    /// <summary>
    /// Stopwatch ticks the callers of shared jobs spent not running chunks: publishing the job, waking workers, and
    /// waiting at the join for helpers to finish. What the fork-joins cost the decoding thread.
    /// </summary>
    public long ForkJoinTicks => Volatile.Read(ref overheadTicks);

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
        long start = Stopwatch.GetTimestamp();
        try
        {
            int helpers = Math.Min(workerCount, chunks - 1);
            work = job;
            chunkCount = chunks;
            failure = null;
            jobs++;
            Volatile.Write(ref nextChunk, 0);
            Volatile.Write(ref activeWorkers, helpers);
            Volatile.Write(ref tickets, helpers);
            Interlocked.Increment(ref generation);
            // A worker announces itself before its last look at the generation, so one of the two always sees the other.
            if (Interlocked.Exchange(ref parked, 0) is var sleepers and > 0) wake.Release(sleepers);
            long drainStart = Stopwatch.GetTimestamp();
            try { Drain(job, chunks); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            long drainEnd = Stopwatch.GetTimestamp();
            // Helpers that have not come by now find no chunk left: withdraw their tickets rather than wait for them to
            // wake (on a busy machine that is a scheduler's time slice). The others must check out before the job's
            // fields are reused.
            if (Interlocked.Exchange(ref tickets, 0) is var unclaimed and > 0) Interlocked.Add(ref activeWorkers, -unclaimed);
            var spin = new SpinWait();
            while (Volatile.Read(ref activeWorkers) != 0) spin.SpinOnce(sleep1Threshold: -1);
            work = null;
            overheadTicks += drainStart - start + Stopwatch.GetTimestamp() - drainEnd;
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
        long seen = 0;
        while (true)
        {
            seen = AwaitJob(seen);
            // A ticket belongs to the job now published: that job cannot finish, nor its fields change, until we check out.
            if (Interlocked.Decrement(ref tickets) < 0) continue;
            try { Volatile.Write(ref workerChunks[index], workerChunks[index] + Drain(work!, chunkCount)); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
            finally
            {
                Volatile.Write(ref workerAllocatedBytes[index], GC.GetAllocatedBytesForCurrentThread());
                Interlocked.Decrement(ref activeWorkers);
            }
        }
    }

    /// <summary>Spins, then parks, until a job after <paramref name="seen"/> is published; returns its generation.</summary>
    private long AwaitJob(long seen)
    {
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Stopwatch.GetTimestamp() - start < SpinTime)
            {
                if (Volatile.Read(ref generation) is var now && now != seen) return now;
                spin.SpinOnce(sleep1Threshold: -1);
            }
            Interlocked.Increment(ref parked);
            // A wake may be stale (meant for a look that already saw its job): the loop looks again and parks again.
            if (Volatile.Read(ref generation) == seen) wake.Wait();
        }
    }
}
