using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace TauCluster.Engine;

/// <summary>
/// A session's work in flight through its <see cref="ComputeWorker"/>, reused for each of its steps: one step (a decode
/// or a prefill, then at most one sampled token), or a run of decode steps (<see cref="DecodeRun"/>) that the worker
/// feeds back to itself, each sampled token the input of the next step, without a round trip through the caller.
/// The worker's pass samples the token; the step completes what waits on it (the caller of a step, or a run's reader
/// waiting for its next token) by queueing itself to the thread pool, which resumes the waiter inline or on its own
/// scheduling context, so the worker goes straight on to its next pass. It is its own completion source rather than a
/// ManualResetValueTaskSourceCore, whose path for an awaiter that arrives just after completion queues a new work
/// item: here that late resume is this same object queued again.
/// </summary>
internal sealed class SessionStep(InferenceSession session, ComputeWorker worker) : IValueTaskSource<int>, IThreadPoolWorkItem
{
    public const int RunWindow = ComputeWorker.RunWindow;

    /// <summary>Stands in <see cref="continuation"/> once the step has completed.</summary>
    private static readonly Action<object?> CompletedSentinel = _ => { };

    /// <summary>A decode step's one token, kept here so that a step hands the worker no new array.</summary>
    private readonly int[] single = new int[1];

    private Sampler? sampler;
    private int sampled;             // written by the pass, apart from what a waiter reads: a run's next pass may run meanwhile
    private Exception? sampleFailure;
    private Exception? failure;      // what the waiter gets
    private int result;
    private short version;
    private int inFlight;
    private bool completed;
    private bool resumeLate;
    private Action<object?>? continuation;
    private object? continuationState;
    private ExecutionContext? executionContext;
    private object? schedulingContext;

    // A run: the worker publishes tokens into the window, the reader takes them, under the gate.
    private readonly Lock gate = new();
    private readonly int[] window = new int[RunWindow];
    private readonly RngState[] windowStates = new RngState[RunWindow];
    private bool running;            // a run is under way (until the reader ends it)
    private bool atWorker;           // the run's next step is queued or in a pass
    private bool stopRequested;
    private bool readerWaits;        // the reader awaits a token (or, once stopped, the worker's last pass)
    private Exception? runFailure;
    private int produced, taken, left;
    private int startLength;
    private RngState takenState;

    public InferenceSession Session { get; } = session;
    public ComputeWorker Worker { get; } = worker;

    /// <summary>The tokens the worker has yet to run through the model, from the start of the next block.</summary>
    public ReadOnlyMemory<int> Remaining { get; private set; }

    /// <summary>Rows of the step's next block: the blocks are those of <see cref="InferenceSession.Append(ReadOnlySpan{int})"/>, so the numbers are too.</summary>
    public int NextBlock => Math.Min(InferenceSession.PrefillBlock, Remaining.Length);

    /// <summary>Whether the pass that runs the step's last block samples a token from its logits.</summary>
    public bool Samples => sampler is not null;

    public ValueTask<int> StartDecode(int token, Sampler sampler)
    {
        single[0] = token;
        return Start(single, sampler);
    }

    /// <summary>Begins a step; refuses a second one while this session's last is still running, which would race on its cache.</summary>
    public ValueTask<int> Start(ReadOnlyMemory<int> tokens, Sampler? sampler)
    {
        Claim();
        Remaining = tokens;
        this.sampler = sampler;
        return Arm();
    }

    private void Claim()
    {
        if (Interlocked.Exchange(ref inFlight, 1) != 0)
            throw new InvalidOperationException("the session already has a step in flight: await it before the next");
    }

    /// <summary>A new completion for the next awaiter.</summary>
    private ValueTask<int> Arm()
    {
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

    /// <summary>Samples the token of the step's last pass, on whichever thread of the pass runs it (one per lane).</summary>
    public void SampleInPass()
    {
        try
        {
            sampled = sampler!.Sample(Session.Logits);
            sampleFailure = null;
        }
        catch (Exception e)
        {
            sampleFailure = e;
        }
    }

    /// <summary>Called by the worker's thread when the step's last pass has run (or failed): completes a step, or goes on with a run.</summary>
    public bool Complete(Exception? error)
    {
        error ??= sampler is null ? null : sampleFailure;
        sampleFailure = null;
        if (running) return error is null ? Publish(sampled) : FailRun(error);
        failure = error;
        result = sampler is null ? -1 : sampled;
        sampler = null;
        Remaining = default;
        Volatile.Write(ref inFlight, 0);   // before the session resumes: its next step may start at once
        Signal();
        return false;
    }

    private void Signal() => ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);

    // ---- runs ----

    /// <summary>
    /// Begins a run of up to <paramref name="count"/> tokens: <paramref name="tokens"/> (what the cache lacks) go through
    /// the model, or, when there are none, the session's current logits are sampled here, and from then on each sampled
    /// token is the next step's input. Returns whether the run is at the worker (to be queued as a prefill or a decode).
    /// </summary>
    public bool StartRun(ReadOnlyMemory<int> tokens, Sampler sampler, int count)
    {
        Claim();
        this.sampler = sampler;
        running = true;
        stopRequested = readerWaits = false;
        runFailure = null;
        produced = taken = 0;
        startLength = Session.Length + tokens.Length;
        takenState = sampler.State;
        // Each token but the last is fed back, so the run ends where the cache would pass sequence_len.
        left = Math.Min(count, Session.Model.Config.SequenceLen - startLength + 1);
        if (!tokens.IsEmpty)
        {
            Remaining = tokens;
            return atWorker = true;
        }
        try
        {
            Publish(sampler.Sample(Session.Logits));
        }
        catch (Exception e)
        {
            FailRun(e);
        }
        return atWorker;
    }

    /// <summary>The worker's pass sampled <paramref name="token"/>: the run keeps it for the reader and goes on while it may.</summary>
    private bool Publish(int token)
    {
        lock (gate)
        {
            window[produced % RunWindow] = token;
            windowStates[produced % RunWindow] = sampler!.State;
            produced++;
            left--;
            if (readerWaits && !stopRequested)
            {
                readerWaits = false;
                result = Take();
                Signal();
            }
            return atWorker = GoesOn(token);
        }
    }

    /// <summary>Whether the run's next step goes to the worker now, with <paramref name="token"/> as its input.</summary>
    private bool GoesOn(int token)
    {
        if (left <= 0 || stopRequested || produced - taken >= RunWindow)
        {
            if (stopRequested && readerWaits)
            {
                readerWaits = false;
                Signal();
            }
            return false;
        }
        single[0] = token;
        Remaining = single;
        return true;
    }

    private bool FailRun(Exception error)
    {
        lock (gate)
        {
            runFailure = error;
            atWorker = false;
            if (readerWaits)
            {
                readerWaits = false;
                if (!stopRequested) failure = error;   // a stop that was waiting only learns that the worker let go
                Signal();
            }
            return false;
        }
    }

    private int Take()
    {
        int slot = taken++ % RunWindow;
        takenState = windowStates[slot];
        return window[slot];
    }

    /// <summary>The run's next token: at once when the worker has it, otherwise when its pass has sampled it.</summary>
    public ValueTask<int> NextToken()
    {
        int token;
        bool resume;
        lock (gate)
        {
            if (!running) throw new InvalidOperationException("the run has ended");
            if (taken >= produced)
            {
                if (runFailure is not null) return ValueTask.FromException<int>(runFailure);
                if (left <= 0 || stopRequested) throw new InvalidOperationException($"the run made the {produced} tokens it was asked for");
                readerWaits = true;
                return Arm();
            }
            bool wasFull = produced - taken >= RunWindow;
            token = Take();
            // A run that waited for its reader goes on now there is room.
            resume = wasFull && !atWorker && runFailure is null && GoesOn(window[(produced - 1) % RunWindow]);
            if (resume) atWorker = true;
        }
        // Queued outside the gate: a stopped worker fails what is queued, other sessions' steps among them, under their gates.
        if (resume) Worker.EnqueueDecode(this);
        return new ValueTask<int>(token);
    }

    /// <summary>The generator as it stood after the last token the reader took: what a checkpoint saves.</summary>
    public RngState TakenGenerator
    {
        get { lock (gate) return takenState; }
    }

    /// <summary>Asks the run to stop; completes when the worker no longer runs it.</summary>
    public ValueTask<int> StopRun()
    {
        lock (gate)
        {
            stopRequested = true;
            if (!atWorker) return new ValueTask<int>(0);
            readerWaits = true;
            return Arm();
        }
    }

    /// <summary>
    /// Once the worker has let go of the run, leaves the session as though only the tokens the reader took had been
    /// generated: the cache cut back (the last taken token is then the next step's input) and the generator as it
    /// stood after the last taken draw, so the next generation draws what this run computed but never handed out.
    /// Returns false when the run failed: its cache is then in no known state (a pass that failed midway), and its
    /// owner must drop it, even if the reader never saw the failure.
    /// </summary>
    public bool EndRun()
    {
        lock (gate)
        {
            if (atWorker) throw new InvalidOperationException("stop the run and await that before ending it");
            int accepted = startLength + taken;
            bool consistent = runFailure is null;
            if (consistent && Session.Length > accepted) Session.Truncate(Math.Max(0, accepted - 1));
            sampler!.State = takenState;
            running = false;
            sampler = null;
            Remaining = default;
            Volatile.Write(ref inFlight, 0);
            return consistent;
        }
    }

    /// <summary>A failed pass or a stopped worker: the step or run fails.</summary>
    public void Fail(Exception error) => Complete(error);

    // ---- completion ----

    void IThreadPoolWorkItem.Execute()
    {
        if (resumeLate)
        {
            resumeLate = false;
            // The completing thread installed the sentinel before marking the step complete: wait out that instant.
            var spin = new SpinWait();
            while (!Volatile.Read(ref completed)) spin.SpinOnce();
            Resume();
            return;
        }
        // The sentinel goes in before the step reads as complete. The other order let an awaiter that polled in between
        // finish at once and arm the next wait, whose continuation this completion would then take for its own.
        var waiting = Interlocked.CompareExchange(ref continuation, CompletedSentinel, null);
        Volatile.Write(ref completed, true);
        if (waiting is not null) Resume();
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
