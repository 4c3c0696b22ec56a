using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

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
    private readonly CancellationTokenSource stopping = new();
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
        stopping.Cancel();
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
            while (!owner.stopping.IsCancellationRequested)
            {
                // Waits without a cancellation token, whose registration would allocate on every wait: Dispose wakes it.
                while (queue.IsEmpty && !owner.stopping.IsCancellationRequested) ready.WaitOne();
                owner.passesAllowed.Wait();
                if (owner.stopping.IsCancellationRequested) return;
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

/// <summary>
/// A session's one decode step in flight through a <see cref="DecodeBatcher"/>, reused for each of its steps. The
/// batcher's thread completes it by queueing it to the thread pool, where it samples the next token and resumes the
/// waiting session (inline, or on the session's own scheduling context), so the batcher goes straight on to its next
/// pass. It is its own completion source rather than a ManualResetValueTaskSourceCore, whose path for an awaiter that
/// arrives just after completion queues a new work item: here that late resume is this same object queued again.
/// </summary>
internal sealed class BatchedStep(InferenceSession session, DecodeBatcher batcher) : IValueTaskSource<int>, IThreadPoolWorkItem
{
    /// <summary>Stands in <see cref="continuation"/> once the step has completed.</summary>
    private static readonly Action<object?> CompletedSentinel = _ => { };

    private Sampler? sampler;
    private Exception? failure;
    private int result;
    private short version;
    private bool completed;
    private bool resumeLate;
    private Action<object?>? continuation;
    private object? continuationState;
    private ExecutionContext? executionContext;
    private object? schedulingContext;

    public InferenceSession Session { get; } = session;
    public int Token { get; private set; }

    public ValueTask<int> Start(int token, Sampler sampler)
    {
        Token = token;
        this.sampler = sampler;
        failure = null;
        completed = resumeLate = false;
        continuation = null;
        continuationState = schedulingContext = null;
        executionContext = null;
        return new ValueTask<int>(this, ++version);
    }

    /// <summary>Called by the batcher's thread when the step's pass has run (or failed).</summary>
    public void Complete(Exception? error)
    {
        failure = error;
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    void IThreadPoolWorkItem.Execute()
    {
        if (resumeLate)
        {
            resumeLate = false;
            Resume(continuation!);
            return;
        }
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            if (failure is null) result = sampler!.Sample(Session.Logits);
        }
        catch (Exception e)
        {
            failure = e;
        }
        sampler = null;
        completed = true;
        var waiting = Interlocked.CompareExchange(ref continuation, CompletedSentinel, null);
        batcher.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        if (waiting is not null) Resume(waiting);
    }

    void IValueTaskSource<int>.OnCompleted(Action<object?> next, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        Check(token);
        if ((flags & ValueTaskSourceOnCompletedFlags.FlowExecutionContext) != 0) executionContext = ExecutionContext.Capture();
        if ((flags & ValueTaskSourceOnCompletedFlags.UseSchedulingContext) != 0)
            schedulingContext = SynchronizationContext.Current is { } context && context.GetType() != typeof(SynchronizationContext)
                ? context
                : TaskScheduler.Current != TaskScheduler.Default ? TaskScheduler.Current : null;
        continuationState = state;
        if (Interlocked.CompareExchange(ref continuation, next, null) is not null)
        {
            // Completed in the meantime: resume from the thread pool, not on this stack.
            continuation = next;
            resumeLate = true;
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);
        }
        batcher.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
    }

    private void Resume(Action<object?> next)
    {
        switch (schedulingContext)
        {
            case SynchronizationContext context:
                context.Post(static s => ((BatchedStep)s!).RunContinuation(), this);
                break;
            case TaskScheduler scheduler:
                Task.Factory.StartNew(static s => ((BatchedStep)s!).RunContinuation(), this, CancellationToken.None, TaskCreationOptions.DenyChildAttach, scheduler);
                break;
            default:
                if (executionContext is { } flowing) ExecutionContext.Run(flowing, static s => ((BatchedStep)s!).RunContinuation(), this);
                else next(continuationState);
                break;
        }
    }

    private void RunContinuation() => continuation!(continuationState);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token)
    {
        Check(token);
        if (!Volatile.Read(ref completed)) return ValueTaskSourceStatus.Pending;
        return failure switch
        {
            null => ValueTaskSourceStatus.Succeeded,
            OperationCanceledException => ValueTaskSourceStatus.Canceled,
            _ => ValueTaskSourceStatus.Faulted,
        };
    }

    int IValueTaskSource<int>.GetResult(short token)
    {
        Check(token);
        if (!Volatile.Read(ref completed)) throw new InvalidOperationException("the decode step has not completed");
        if (failure is not null) ExceptionDispatchInfo.Throw(failure);
        return result;
    }

    private void Check(short token)
    {
        if (token != version) throw new InvalidOperationException("a decode step's result was awaited twice, or after the session's next step");
    }
}
