using System.Collections.Concurrent;
using System.Diagnostics;

namespace TauCluster.Engine;

/// <summary>
/// Runs one model's kernels on one device for every session of that model on the silo: it owns the forward pass's
/// buffers, the thread the passes run on, and the continuous batch. Each pass takes the decode steps that are waiting
/// (one row each, up to <see cref="MaxBatch"/>) and blocks of prompts (up to <see cref="InferenceSession.PrefillBlock"/>
/// rows of one session each) while they fit in <see cref="RowBudget"/>, one lane per session, so every weight is read
/// once per pass and a long prompt goes a block per pass instead of stalling the others' tokens behind it (chunked
/// prefill). A step that arrives while a pass runs joins the next one. Because every number of a row is computed the
/// same way whatever else is in the pass, and a prompt's blocks are those <see cref="InferenceSession.Append(ReadOnlySpan{int})"/>
/// runs, a session's logits and tokens are bitwise those it gets alone.
/// </summary>
public sealed partial class ComputeWorker : IDisposable
{
    private readonly TauModel model;
    private readonly ConcurrentQueue<SessionStep> decodes = new();
    private readonly ConcurrentQueue<SessionStep> prefills = new();
    /// <summary>An OS event rather than a SemaphoreSlim, whose lock allocates when contended: a step allocates nothing.</summary>
    private readonly AutoResetEvent ready = new(initialState: false);
    private readonly IForwardKernels pass;
    private readonly DeviceModel? onDevice;
    private readonly KernelPool pool;
    private volatile bool stopped;
    private volatile PassHold? hold;
    private int waiting;
    private long allocatedBytes;

    internal ComputeWorker(TauModel model, ComputeDevice device, int maxBatch, KernelPool pool, DeviceModel? onDevice = null)
    {
        this.model = model;
        this.onDevice = onDevice;
        this.pool = pool;
        Device = device;
        MaxBatch = maxBatch;
        RowBudget = InferenceSession.PrefillBlock + maxBatch;
        pass = onDevice is null ? new ForwardBuffers(model, pool) : onDevice.CreatePass(RowBudget);
        var batch = new PassBatch(this);
        new Thread(() => Loop(batch)) { IsBackground = true, Name = $"tau-compute-{device}" }.Start();
    }

    /// <summary>
    /// Tokens a run (<see cref="Generate"/>) may hold that its reader has not taken: past it the run waits for the
    /// reader, so a slow caller does not make the worker compute far ahead, and a stop wastes at most this many steps.
    /// </summary>
    public const int RunWindow = 16;

    public ComputeDevice Device { get; }
    public int MaxBatch { get; }

    /// <summary>Rows one pass may hold: a full prompt block beside a full batch of decode steps.</summary>
    public int RowBudget { get; }

    /// <summary>Steps waiting for their first pass.</summary>
    public int Waiting => Volatile.Read(ref waiting);

    /// <summary>Passes run, decode steps and prompt blocks they held, and the most lanes one pass held (tests, metrics).</summary>
    public long Batches { get; private set; }
    public long Steps { get; private set; }
    public long PrefillChunks { get; private set; }
    public int LargestBatch { get; private set; }

    /// <summary>Lanes the latest pass held: the batch as it forms now, for a live view of the silo.</summary>
    public int LastBatch { get; private set; }

    /// <summary>
    /// Bytes the worker's own code has allocated, wherever it ran: its passes, its sampling on the thread pool, and
    /// each <see cref="Decode"/> call and await of one (not the awaiting caller's own code; the kernel pool counts its
    /// workers apart). A check that a step allocates nothing; reading the thread's count costs a few nanoseconds.
    /// </summary>
    internal long AllocatedBytes => Interlocked.Read(ref allocatedBytes);

    internal void CountAllocated(long bytes)
    {
        if (bytes != 0) Interlocked.Add(ref allocatedBytes, bytes);
    }

    /// <summary>
    /// Runs <paramref name="token"/> through the session's model in the next pass, which also samples the next token
    /// (the sessions of a pass sample in parallel, on the kernel pool). A step allocates nothing: what it returns is
    /// backed by the session's reusable <see cref="SessionStep"/>.
    /// </summary>
    public ValueTask<int> Decode(InferenceSession session, int token, Sampler sampler)
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        SessionStep step;
        ValueTask<int> done;
        try
        {
            Admit(session);
            session.Validate(token);
            session.ReserveAhead(1);
            if (session.HasExternalContext) return Alone(session, new[] { token }, sampler);
            step = StepOf(session);
            done = step.StartDecode(token, sampler);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
        Enqueue(decodes, step);
        CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        return done;
    }

    /// <summary>
    /// Generates up to <paramref name="count"/> tokens: <paramref name="tokens"/> (what the cache lacks) go through the
    /// model, or, when there are none, the current logits are sampled, and from then on the pass that samples a token
    /// queues the step that feeds it back, so a session's decode steps follow each other without waiting for its caller
    /// (at most <see cref="RunWindow"/> tokens ahead of what the caller has taken). The caller takes the
    /// tokens in order and ends the run with <see cref="DecodeRun.Stop"/>, which leaves the session as though only the
    /// tokens taken had been generated. The tokens are those that <see cref="Decode"/>, step by step, gives.
    /// </summary>
    public DecodeRun Generate(InferenceSession session, ReadOnlyMemory<int> tokens, Sampler sampler, int count)
    {
        Admit(session);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        if (!tokens.IsEmpty) session.Validate(tokens.Span);
        session.ReserveAhead(tokens.Length + count);
        if (session.HasExternalContext) throw new InvalidOperationException("a session with context shards decodes a step at a time");
        var step = StepOf(session);
        if (step.StartRun(tokens, sampler, count)) Enqueue(tokens.Length > 1 ? prefills : decodes, step);
        return new DecodeRun(step);
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> through the session's model, a block per pass beside other sessions' steps, and
    /// then samples the next token when given a sampler (otherwise the result is −1). None: samples the current logits.
    /// </summary>
    public ValueTask<int> Prefill(InferenceSession session, ReadOnlyMemory<int> tokens, Sampler? sampler)
    {
        try
        {
            Admit(session);
            if (tokens.IsEmpty) return new(sampler?.Sample(session.Logits) ?? -1);
            session.Validate(tokens.Span);
            session.ReserveAhead(tokens.Length);
            if (session.HasExternalContext) return Alone(session, tokens, sampler);
            var step = StepOf(session);
            var done = step.Start(tokens, sampler);
            Enqueue(prefills, step);
            return done;
        }
        catch (Exception e)
        {
            return ValueTask.FromException<int>(e);
        }
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> through the session's model scoring each one (<see cref="InferenceSession.AppendScored"/>):
    /// a prompt whose log-probabilities were asked for. It needs every row's logits, which a batched pass does not keep,
    /// so it runs by itself on the thread pool, as a session with context shards does.
    /// </summary>
    public Task<TokenScore?[]> Score(InferenceSession session, ReadOnlyMemory<int> tokens, int top)
    {
        try
        {
            Admit(session);
            session.Validate(tokens.Span);
            session.ReserveAhead(tokens.Length);
        }
        catch (Exception e)
        {
            return Task.FromException<TokenScore?[]>(e);
        }
        return Task.Run(() => session.AppendScored(tokens.Span, top));
    }

    private void Admit(InferenceSession session)
    {
        ObjectDisposedException.ThrowIf(stopped, this);
        if (session.Model != model) throw new ArgumentException("the session runs another model than this worker's", nameof(session));
        if (session.Device != onDevice) throw new ArgumentException($"the session's cache is on another device than this worker's ({Device})", nameof(session));
    }

    private SessionStep StepOf(InferenceSession session)
    {
        if (session.WorkerStep is not { } step || step.Worker != this) session.WorkerStep = step = new SessionStep(session, this);
        return step;
    }

    /// <summary>
    /// A session with context shards waits on them in every layer: it runs by itself on the thread pool, in its own
    /// buffers, rather than hold up every other session's pass.
    /// </summary>
    private static ValueTask<int> Alone(InferenceSession session, ReadOnlyMemory<int> tokens, Sampler? sampler) => new(Task.Run(() =>
    {
        var logits = session.Append(tokens.Span);
        return sampler?.Sample(logits) ?? -1;
    }));

    /// <summary>A run's next decode step, queued by the pass that sampled its input or by the reader that made room.</summary>
    internal void EnqueueDecode(SessionStep step) => Enqueue(decodes, step);

    private void Enqueue(ConcurrentQueue<SessionStep> queue, SessionStep step)
    {
        Interlocked.Increment(ref waiting);
        queue.Enqueue(step);
        ready.Set();
        // A run's reader can queue its next step after the loop has stopped and failed what was queued: fail it too.
        if (stopped) FailQueued(new ObjectDisposedException(nameof(ComputeWorker)));
    }

    private void FailQueued(Exception error)
    {
        while (decodes.TryDequeue(out var step)) step.Fail(error);
        while (prefills.TryDequeue(out var step)) step.Fail(error);
    }

    /// <summary>
    /// Until disposed, passes wait: the first after it takes as many steps as fit, and <see cref="PassHold.Allow"/> lets
    /// passes run one by one. Lets a test line up a pass of an exact make-up.
    /// </summary>
    internal PassHold HoldPasses() => hold = new PassHold(this);

    internal sealed class PassHold(ComputeWorker worker) : IDisposable
    {
        private readonly SemaphoreSlim passes = new(0);

        /// <summary>Lets <paramref name="count"/> more passes run.</summary>
        public void Allow(int count = 1) => passes.Release(count);

        public void Enter() => passes.Wait();

        public void Dispose()
        {
            worker.hold = null;
            passes.Release(int.MaxValue / 2);
        }
    }

    public void Dispose()
    {
        stopped = true;
        hold?.Dispose();
        ready.Set();
    }

    private void Loop(PassBatch batch)
    {
        int lastDecodes = 0;
        long lastPassTicks = 0;
        while (true)
        {
            // Waits without a cancellation token, whose registration would allocate on every wait: Dispose wakes it.
            while (!stopped && !batch.HasCarried && decodes.IsEmpty && prefills.IsEmpty) ready.WaitOne();
            AwaitReturningSteps(lastDecodes, lastPassTicks);
            hold?.Enter();
            if (stopped) break;
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            long start = Stopwatch.GetTimestamp();
            batch.Gather();
            Run(batch);
            (lastDecodes, lastPassTicks) = (batch.DecodeCount, Stopwatch.GetTimestamp() - start);
            CountAllocated(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        }
        batch.FailAll(new ObjectDisposedException(nameof(ComputeWorker)));
    }

    /// <summary>
    /// A run's next step is queued by the pass that sampled its input, but a caller that decodes a step at a time (a
    /// session with context shards, <see cref="Decode"/>) comes back a fraction of a millisecond after its pass. A pass
    /// that starts before they all are reads every weight for the few rows that are back and leaves the rest to another
    /// read (16 such sessions averaged 8 steps a pass). So a pass waits until as many decode steps are queued as the
    /// last one held, for at most a quarter of its time (and 2 ms): sessions whose generation ended do not come back.
    /// </summary>
    private void AwaitReturningSteps(int expected, long lastPassTicks)
    {
        expected = Math.Min(expected, MaxBatch);
        long deadline = Stopwatch.GetTimestamp() + Math.Min(lastPassTicks / 4, Stopwatch.Frequency / 500);
        while (!stopped && decodes.Count < expected)
        {
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0) return;
            ready.WaitOne((int)Math.Ceiling(left * 1000.0 / Stopwatch.Frequency));
        }
    }

    private void Run(PassBatch batch)
    {
        try
        {
            if (onDevice is null) model.Forward(batch.Tokens, batch.Lanes, pass, everyRow: false);
            else
                lock (onDevice.Device.Gate) model.Forward(batch.Tokens, batch.Lanes, pass, everyRow: false);
        }
        catch (Exception e)
        {
            batch.Fail(e);
            return;
        }
        Batches++;
        Steps += batch.DecodeCount;
        PrefillChunks += batch.Count - batch.DecodeCount;
        LargestBatch = Math.Max(LargestBatch, batch.Count);
        LastBatch = batch.Count;
        batch.Finish(pass.Logits, model.Config.VocabSize, pool);
    }
}
