using System.Collections.Concurrent;

namespace TauCluster.Engine;

/// <summary>
/// Continuous batching of decode steps: sessions of the same model that each want one more token are run through one
/// forward pass, so every weight is read once per batch (matrix–matrix) instead of once per session, while each row
/// still attends only to its own session's cache. A session that arrives while a batch runs joins the next one; a
/// session that leaves is simply not in it: nobody waits for anybody's whole generation. Because every number of a
/// row is computed the same way whatever else is in the batch, a session's tokens are bitwise those it gets alone.
/// </summary>
public sealed class DecodeBatcher : IDisposable
{
    private readonly ConcurrentDictionary<TauModel, ModelLane> lanes = new(ReferenceEqualityComparer.Instance);
    private readonly KernelPool pool;
    private volatile bool stopped;
    private readonly ManualResetEventSlim passesAllowed = new(initialState: true);

    public DecodeBatcher(int maxBatch = 64, KernelPool? pool = null)
    {
        MaxBatch = maxBatch;
        this.pool = pool ?? KernelPool.Shared;
    }

    public int MaxBatch { get; }

    /// <summary>Steps waiting for the next batch, over every model.</summary>
    public int Waiting => lanes.Values.Sum(l => l.Waiting);

    /// <summary>How many forward passes ran, how many steps they held, and the most steps one pass held (tests, metrics).</summary>
    public long Batches => lanes.Values.Sum(l => l.Batches);
    public long Steps => lanes.Values.Sum(l => l.Steps);
    public int LargestBatch => lanes.Values.Select(l => l.LargestBatch).DefaultIfEmpty(0).Max();

    /// <summary>
    /// Bytes the batcher's own code has allocated, wherever it ran: its passes, its sampling on the thread pool, and
    /// each <see cref="Step"/> call and await of one (not the awaiting caller's own code; the kernel pool counts its
    /// workers apart). A check that a step allocates nothing; reading the thread's count costs a few nanoseconds.
    /// </summary>
    internal long AllocatedBytes => Interlocked.Read(ref allocatedBytes);

    private long allocatedBytes;

    internal void CountAllocated(long bytes)
    {
        if (bytes != 0) Interlocked.Add(ref allocatedBytes, bytes);
    }

    /// <summary>
    /// Runs <paramref name="token"/> through the session's model, batched with whoever is ready, then samples the next
    /// token on a thread-pool thread, so that the sessions of a batch sample in parallel while the next batch runs.
    /// A session has at most one step in flight (its grain awaits each). A step allocates nothing: what it returns is
    /// backed by the session's reusable <see cref="BatchedStep"/>.
    /// </summary>
    public ValueTask<int> Step(InferenceSession session, int token, Sampler sampler)
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            session.Validate(token);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
        var step = session.BatchedStep ??= new BatchedStep(session, this);
        var done = lanes.GetOrAdd(session.Model, static (model, owner) => new ModelLane(model, owner), this).Enqueue(step, token, sampler);
        CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        return done;
    }

    /// <summary>
    /// Until disposed, no new forward pass starts: steps queue up, and the first pass after it takes as many of them
    /// as fit. Lets a test line up a batch of an exact size.
    /// </summary>
    internal IDisposable HoldPasses()
    {
        passesAllowed.Reset();
        return new PassHold(passesAllowed);
    }

    public void Dispose()
    {
        stopped = true;
        passesAllowed.Set();
        foreach (var lane in lanes.Values) lane.Wake();
    }

    private sealed class PassHold(ManualResetEventSlim passesAllowed) : IDisposable
    {
        public void Dispose() => passesAllowed.Set();
    }

    private sealed class ModelLane
    {
        private readonly TauModel model;
        private readonly DecodeBatcher owner;
        private readonly ConcurrentQueue<BatchedStep> queue = new();
        /// <summary>An OS event rather than a SemaphoreSlim, whose lock allocates when contended: a step allocates nothing.</summary>
        private readonly AutoResetEvent ready = new(initialState: false);
        private readonly ForwardBuffers buffers;
        private int waiting;

        public ModelLane(TauModel model, DecodeBatcher owner)
        {
            this.model = model;
            this.owner = owner;
            buffers = new ForwardBuffers(model.Config, owner.pool);
            new Thread(Loop) { IsBackground = true, Name = "tau-decode-batcher" }.Start();
        }

        public int Waiting => Volatile.Read(ref waiting);
        public long Batches { get; private set; }
        public long Steps { get; private set; }
        public int LargestBatch { get; private set; }

        public ValueTask<int> Enqueue(BatchedStep step, int token, Sampler sampler)
        {
            var done = step.Start(token, sampler);
            Interlocked.Increment(ref waiting);
            queue.Enqueue(step);
            ready.Set();
            return done;
        }

        private void Loop()
        {
            var batch = new List<BatchedStep>(owner.MaxBatch);
            var tokens = new int[owner.MaxBatch];
            var lanes = new Lane[owner.MaxBatch];
            while (!owner.stopped)
            {
                // Waits without a cancellation token, whose registration would allocate on every wait: Dispose wakes it.
                while (queue.IsEmpty && !owner.stopped) ready.WaitOne();
                owner.passesAllowed.Wait();
                if (owner.stopped) return;
                long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
                while (batch.Count < owner.MaxBatch && queue.TryDequeue(out var step))
                {
                    Interlocked.Decrement(ref waiting);
                    batch.Add(step);
                }
                Run(batch, tokens, lanes);
                batch.Clear();
                owner.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
            }
        }

        public void Wake() => ready.Set();

        private void Run(List<BatchedStep> batch, int[] tokens, Lane[] lanes)
        {
            for (int i = 0; i < batch.Count; i++) (tokens[i], lanes[i]) = (batch[i].Token, batch[i].Session.DecodeLane);
            try
            {
                model.Forward(tokens.AsSpan(0, batch.Count), lanes.AsSpan(0, batch.Count), buffers, everyRow: false);
            }
            catch (Exception e)
            {
                foreach (var step in batch) step.Complete(e);
                return;
            }
            finally
            {
                Array.Clear(lanes, 0, batch.Count);
            }
            Batches++;
            Steps += batch.Count;
            LargestBatch = Math.Max(LargestBatch, batch.Count);
            int vocab = model.Config.VocabSize;
            for (int i = 0; i < batch.Count; i++)
            {
                var step = batch[i];
                step.Session.AcceptBatched(step.Token, buffers.Logits.AsSpan(i * vocab, vocab));
                step.Complete(null);
            }
        }
    }
}
