using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace TauCluster.Engine;

/// <summary>
/// A session's one step in flight through its <see cref="ComputeWorker"/> (a decode step or a prefill), reused for each
/// of its steps. The worker's thread runs it a block at a time and completes it by queueing it to the thread pool,
/// where it samples the next token (when asked) and resumes the waiting session (inline, or on the session's own
/// scheduling context), so the worker goes straight on to its next pass. It is its own completion source rather than
/// a ManualResetValueTaskSourceCore, whose path for an awaiter that arrives just after completion queues a new work
/// item: here that late resume is this same object queued again.
/// </summary>
internal sealed class SessionStep(InferenceSession session, ComputeWorker worker) : IValueTaskSource<int>, IThreadPoolWorkItem
{
    /// <summary>Stands in <see cref="continuation"/> once the step has completed.</summary>
    private static readonly Action<object?> CompletedSentinel = _ => { };

    /// <summary>A decode step's one token, kept here so that a step hands the worker no new array.</summary>
    private readonly int[] single = new int[1];

    private Sampler? sampler;
    private Exception? failure;
    private int result;
    private short version;
    private int inFlight;
    private bool completed;
    private bool resumeLate;
    private Action<object?>? continuation;
    private object? continuationState;
    private ExecutionContext? executionContext;
    private object? schedulingContext;

    public InferenceSession Session { get; } = session;
    public ComputeWorker Worker { get; } = worker;

    /// <summary>The tokens the worker has yet to run through the model, from the start of the next block.</summary>
    public ReadOnlyMemory<int> Remaining { get; private set; }

    /// <summary>Rows of the step's next block: the blocks are those of <see cref="InferenceSession.Append(ReadOnlySpan{int})"/>, so the numbers are too.</summary>
    public int NextBlock => Math.Min(InferenceSession.PrefillBlock, Remaining.Length);

    public ValueTask<int> StartDecode(int token, Sampler sampler)
    {
        single[0] = token;
        return Start(single, sampler);
    }

    /// <summary>Begins a step; refuses a second one while this session's last is still running, which would race on its cache.</summary>
    public ValueTask<int> Start(ReadOnlyMemory<int> tokens, Sampler? sampler)
    {
        if (Interlocked.Exchange(ref inFlight, 1) != 0)
            throw new InvalidOperationException("the session already has a step in flight: await it before the next");
        Remaining = tokens;
        this.sampler = sampler;
        failure = null;
        completed = resumeLate = false;
        continuation = null;
        continuationState = schedulingContext = null;
        executionContext = null;
        return new ValueTask<int>(this, ++version);
    }

    /// <summary>The worker's thread ran the next block; whether that was the last.</summary>
    public bool Advance(int rows)
    {
        Remaining = Remaining[rows..];
        return Remaining.IsEmpty;
    }

    /// <summary>Called by the worker's thread when the step's last pass has run (or failed).</summary>
    public void Complete(Exception? error)
    {
        failure = error;
        Remaining = default;
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    void IThreadPoolWorkItem.Execute()
    {
        if (resumeLate)
        {
            resumeLate = false;
            Resume();
            return;
        }
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            if (failure is null) result = sampler is null ? -1 : sampler.Sample(Session.Logits);
        }
        catch (Exception e)
        {
            failure = e;
        }
        sampler = null;
        Volatile.Write(ref inFlight, 0);   // before the session resumes: its next step may start at once
        completed = true;
        bool awaited = Interlocked.CompareExchange(ref continuation, CompletedSentinel, null) is not null;
        Worker.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        if (awaited) Resume();
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
        Worker.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
    }

    /// <summary>Runs the awaiter's continuation where it asked to be resumed: its scheduling context, or here.</summary>
    private void Resume()
    {
        switch (schedulingContext)
        {
            case SynchronizationContext context:
                context.Post(static s => ((SessionStep)s!).RunContinuation(), this);
                break;
            case TaskScheduler scheduler:
                Task.Factory.StartNew(static s => ((SessionStep)s!).RunContinuation(), this, CancellationToken.None, TaskCreationOptions.DenyChildAttach, scheduler);
                break;
            default:
                RunContinuation();
                break;
        }
    }

    /// <summary>The continuation, in the execution context it was awaited in when it asked for that to flow.</summary>
    private void RunContinuation()
    {
        if (executionContext is { } flowing) ExecutionContext.Run(flowing, static s => ((SessionStep)s!).InvokeContinuation(), this);
        else InvokeContinuation();
    }

    private void InvokeContinuation() => continuation!(continuationState);

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
        if (!Volatile.Read(ref completed)) throw new InvalidOperationException("the step has not completed");
        if (failure is not null) ExceptionDispatchInfo.Throw(failure);
        return result;
    }

    private void Check(short token)
    {
        if (token != version) throw new InvalidOperationException("a step's result was awaited twice, or after the session's next step");
    }
}
