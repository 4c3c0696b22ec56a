using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace TauCluster.Engine;

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
            Resume();
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
        bool awaited = Interlocked.CompareExchange(ref continuation, CompletedSentinel, null) is not null;
        batcher.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
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
        batcher.CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
    }

    /// <summary>Runs the awaiter's continuation where it asked to be resumed: its scheduling context, or here.</summary>
    private void Resume()
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
                RunContinuation();
                break;
        }
    }

    /// <summary>The continuation, in the execution context it was awaited in when it asked for that to flow.</summary>
    private void RunContinuation()
    {
        if (executionContext is { } flowing) ExecutionContext.Run(flowing, static s => ((BatchedStep)s!).InvokeContinuation(), this);
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
        if (!Volatile.Read(ref completed)) throw new InvalidOperationException("the decode step has not completed");
        if (failure is not null) ExceptionDispatchInfo.Throw(failure);
        return result;
    }

    private void Check(short token)
    {
        if (token != version) throw new InvalidOperationException("a decode step's result was awaited twice, or after the session's next step");
    }
}
