using Microsoft.Extensions.Logging;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// The in-memory half of one session on this silo: its live cache and sampler (<see cref="SessionCompute"/>), where
/// each step's compute goes (its model's <see cref="ComputeWorker"/> on this silo), the context shards its oldest positions
/// move to past the cache budget, and the recomputation of a lost shard. Derived from the session's tokens; the grain
/// owns those and the persisted state.
/// </summary>
internal sealed class SessionRuntime(
    string sessionId,
    IGrainFactory grains,
    ComputeWorkers compute,
    LocalSessions local,
    TauClusterOptions options,
    TauMetrics metrics,
    ILogger logger)
{
    /// <summary>Rebuilds of lost context shards one step may go through before it fails (a cluster losing silos one after another).</summary>
    private const int MaxShardRebuilds = 5;

    /// <summary>The live cache, or none until the session computes (or after a failure dropped it).</summary>
    public SessionCompute? Current { get; private set; }

    /// <summary>Tokens this activation computed again rather than found in a cache: a replay, a lost shard, a fork's last token.</summary>
    public int Rebuilt { get; set; }

    /// <summary>
    /// Runs what the cache lacks through the model (and samples, when asked). A lost context shard is computed again from
    /// the tokens and the step retried. Any other failure leaves the cache in an unknown state, so it is dropped and
    /// rebuilt from the persisted tokens on next use.
    /// </summary>
    public async Task<int> Step(SessionCompute c, Transcript tokens, bool sample)
    {
        for (int rebuild = 1; ; rebuild++)
        {
            try
            {
                return await RunLacking(c, tokens, sample);
            }
            catch (ContextShardLostException lost) when (rebuild <= MaxShardRebuilds)
            {
                logger.LogWarning(lost, "Session {Session}: context shard from position {Start} lost; computing it again from the tokens", sessionId, lost.Start);
                metrics.ShardRebuilds.Add(1);
                c.Inference.Truncate(lost.Start);   // the lost shard and everything after it; earlier shards still hold theirs
                Rebuilt += tokens.Count - c.Inference.Length;
                await Task.Delay(TimeSpan.FromMilliseconds(200 * rebuild));   // membership needs a moment to route around a dead silo
            }
            catch
            {
                _ = Release();
                throw;
            }
        }
    }

    /// <summary>
    /// Runs what the cache lacks scoring each token (a prompt whose log-probabilities were asked for); the segments past
    /// the budget move to shards after it. Any failure drops the cache, as a step's does.
    /// </summary>
    public async Task<TokenScore?[]> Score(SessionCompute c, Transcript tokens, int top)
    {
        try
        {
            var scores = await WorkerFor(c).Score(c.Inference, tokens.From(c.Inference.Length), top);
            if (options.ContextBudgetBytes > 0) await Offload(c);
            return scores;
        }
        catch
        {
            _ = Release();
            throw;
        }
    }

    /// <summary>
    /// The scores of the transcript's positions from <paramref name="from"/> on, computed on a copy of the cache so that
    /// the live one stays as it is (the positions a resumed request replays). A cache with context shards is not
    /// copied: the copy runs the transcript from its start, in this silo's memory, for as long as it scores.
    /// </summary>
    public async Task<TokenScore?[]> ScoreCopy(SessionCompute c, Transcript tokens, int from, int top)
    {
        var live = c.Inference;
        int start = live.HasExternalContext ? 0 : Math.Clamp(from - 1, 0, live.Length);
        using var copy = live.HasExternalContext ? compute.NewSession(live.Model, live.Domain) : live.CopyPrefix(start);
        var scores = await WorkerFor(c).Score(copy, tokens.From(start), top);
        return scores[(from - start)..];
    }

    /// <summary>Generates up to <paramref name="count"/> tokens after the transcript (<see cref="TokenStream"/>).</summary>
    public TokenStream Generate(SessionCompute c, Transcript tokens, int count) => new(this, c, tokens, count);

    /// <summary>
    /// Before a run: a prompt the cache lacks goes in first (a segment at a time, as any step's), and segments past the
    /// budget move to shards, so that the run itself feeds at most one token the cache does not hold.
    /// </summary>
    public async Task BeforeRun(SessionCompute c, Transcript tokens)
    {
        if (tokens.Count - c.Inference.Length > 1) await Step(c, tokens, sample: false);
        if (options.ContextBudgetBytes > 0) await Offload(c);
    }

    /// <summary>Tokens a run may make before the λ index seals its next segment, which the budget may then move out.</summary>
    public int RunHeadroom(SessionCompute c)
    {
        if (options.ContextBudgetBytes <= 0 || c.Inference.Cache is not IndexedTauCache) return int.MaxValue;
        int position = c.Inference.Length + 1;   // the cache after the run's first step
        return LambdaIndex.SegmentSize - position % LambdaIndex.SegmentSize + 1;
    }

    public ComputeWorker WorkerFor(SessionCompute c) => compute.For(c.Inference.Model);

    /// <summary>
    /// On the λ index with a budget, a long prefill runs a segment at a time and sealed segments move to context shards
    /// between them, so the silo never holds much more than the budget.
    /// </summary>
    private async Task<int> RunLacking(SessionCompute c, Transcript tokens, bool sample)
    {
        var lacking = tokens.From(c.Inference.Length);   // a prompt just appended, or the token sampled last
        if (options.ContextBudgetBytes <= 0 || c.Inference.Cache is not IndexedTauCache) return await Compute(c, lacking, sample);
        int next = -1;
        for (int offset = 0; offset == 0 || offset < lacking.Length; offset += LambdaIndex.SegmentSize)
        {
            int end = Math.Min(lacking.Length, offset + LambdaIndex.SegmentSize);
            next = await Compute(c, lacking[offset..end], sample && end == lacking.Length);
            await Offload(c);
        }
        return next;
    }

    /// <summary>
    /// Every step goes to the model's compute worker on this silo, called directly rather than through a grain: the cache
    /// lives in this silo's memory, so a message would only add a hop. A decode step takes the worker's allocation-free path.
    /// </summary>
    private async Task<int> Compute(SessionCompute c, int[] tokens, bool sample)
    {
        var worker = WorkerFor(c);
        return sample && tokens.Length == 1
            ? await worker.Decode(c.Inference, tokens[0], c.Sampler)
            : await worker.Prefill(c.Inference, tokens, sample ? c.Sampler : null);
    }

    /// <summary>
    /// Moves the oldest sealed segments to a new context shard while the cache is over its budget. A move that fails
    /// changes nothing: the session keeps them and tries again after its next step.
    /// </summary>
    private async Task Offload(SessionCompute c)
    {
        long budget = options.ContextBudgetBytes;
        if (c.Inference.Cache is not IndexedTauCache cache) return;
        while (cache.Bytes > budget && cache.SealedSegments > 0)
        {
            long segmentBytes = cache.PeekSegments(1)[0].Sum(s => s.Bytes);
            int perShard = (int)Math.Clamp(budget / segmentBytes, 1, cache.SealedSegments);
            c.Shards ??= new ContextShards(grains, sessionId, c.Inference.Model.Config, cache.Domain.Temperature, metrics);
            try
            {
                await c.Shards.Offload(cache, perShard);
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "Session {Session}: could not move {Segments} segments to a context shard; keeping them here", sessionId, perShard);
                return;
            }
        }
    }

    /// <summary>Makes <paramref name="c"/> the session's live cache, in place of any other, and lists it on the silo.</summary>
    public SessionCompute Attach(SessionCompute c)
    {
        _ = Release();
        local.Add(c);
        return Current = c;
    }

    /// <summary>
    /// Forgets the in-memory cache and drops its context shards; the task ends when the shards have answered (it never
    /// faults). <paramref name="dispose"/> gives a device cache's memory back at once, for a session that runs nothing
    /// more (a deactivation); a cache replaced mid-use gives it back when the GC collects it, after any pass on it.
    /// </summary>
    public Task Release(bool dispose = false)
    {
        var released = Current;
        Current = null;
        if (released is null) return Task.CompletedTask;
        local.Remove(released);
        if (dispose) released.Inference.Dispose();
        return released.Shards?.DropAll() ?? Task.CompletedTask;
    }
}
