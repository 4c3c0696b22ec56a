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
    private readonly CancellationTokenSource stopping = new();

    public DecodeBatcher(int maxBatch = 64, KernelPool? pool = null)
    {
        MaxBatch = maxBatch;
        this.pool = pool ?? KernelPool.Shared;
    }

    public int MaxBatch { get; }

    /// <summary>Steps waiting for the next batch, over every model.</summary>
    public int Waiting => lanes.Values.Sum(l => l.Waiting);

    /// <summary>The sizes of the batches run so far (for tests and metrics): how many steps shared each pass.</summary>
    public long Batches => lanes.Values.Sum(l => l.Batches);
    public long Steps => lanes.Values.Sum(l => l.Steps);

    /// <summary>
    /// Runs <paramref name="token"/> through the session's model, batched with whoever is ready, then samples the next
    /// token on the caller's side, so that the sessions of a batch sample in parallel while the next batch runs.
    /// A session has at most one step in flight (its grain awaits each).
    /// </summary>
    public async Task<int> Step(InferenceSession session, int token, Sampler sampler)
    {
        session.Validate([token]);
        await lanes.GetOrAdd(session.Model, model => new ModelLane(model, this)).Enqueue(session, token);
        return sampler.Sample(session.Logits);
    }

    public void Dispose() => stopping.Cancel();

    private sealed class ModelLane
    {
        private readonly TauModel model;
        private readonly DecodeBatcher owner;
        private readonly ConcurrentQueue<Request> queue = new();
        private readonly SemaphoreSlim ready = new(0);
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

        public Task Enqueue(InferenceSession session, int token)
        {
            var request = new Request(session, token, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            Interlocked.Increment(ref waiting);
            queue.Enqueue(request);
            ready.Release();
            return request.Done.Task;
        }

        private void Loop()
        {
            var batch = new List<Request>(owner.MaxBatch);
            var tokens = new int[owner.MaxBatch];
            var lanes = new Lane[owner.MaxBatch];
            while (!owner.stopping.IsCancellationRequested)
            {
                try { ready.Wait(owner.stopping.Token); }
                catch (OperationCanceledException) { return; }
                batch.Add(Take());
                while (batch.Count < owner.MaxBatch && ready.Wait(0)) batch.Add(Take());
                Run(batch, tokens, lanes);
                batch.Clear();
            }
        }

        private Request Take()
        {
            queue.TryDequeue(out var request);
            Interlocked.Decrement(ref waiting);
            return request!;
        }

        private void Run(List<Request> batch, int[] tokens, Lane[] lanes)
        {
            for (int i = 0; i < batch.Count; i++) (tokens[i], lanes[i]) = (batch[i].Token, batch[i].Session.DecodeLane);
            try
            {
                model.Forward(tokens.AsSpan(0, batch.Count), lanes.AsSpan(0, batch.Count), buffers, everyRow: false);
            }
            catch (Exception e)
            {
                foreach (var r in batch) r.Done.TrySetException(e);
                return;
            }
            finally
            {
                Array.Clear(lanes, 0, batch.Count);
            }
            Batches++;
            Steps += batch.Count;
            int vocab = model.Config.VocabSize;
            for (int i = 0; i < batch.Count; i++)
            {
                var r = batch[i];
                r.Session.AcceptBatched(r.Token, buffers.Logits.AsSpan(i * vocab, vocab));
                r.Done.TrySetResult();
            }
        }
    }

    private sealed record Request(InferenceSession Session, int Token, TaskCompletionSource Done);
}
