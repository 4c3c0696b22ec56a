using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>A session's durable state: small, compact, and enough to rebuild everything else.</summary>
[GenerateSerializer]
public sealed class SessionState
{
    [Id(0)] public SessionSpec? Spec { get; set; }
    [Id(1)] public int DomainVersion { get; set; }

    /// <summary>Token ids as little-endian int32: one buffer, not one stored number per id.</summary>
    [Id(2)] public byte[] Tokens { get; set; } = [];

    /// <summary>The sampler's generator state, saved with the tokens it produced.</summary>
    [Id(3)] public ulong[] Generator { get; set; } = [];
}

/// <summary>
/// One conversation. Reentrant so that an ongoing generation stream and other calls can be accepted, with a
/// FIFO turnstile so that they are still served one at a time, in order.
/// </summary>
[Reentrant]
[PreferLocalPlacement]   // a client's sessions land on random silos; a fork lands beside its parent and copies its cache
public sealed class SessionGrain(
    [PersistentState("session", TauStorage.Name)] IPersistentState<SessionState> state,
    ModelStore models,
    DomainStore domains,
    LocalSessions local,
    ILocalSiloDetails silo,
    DecodeBatcher batcher,
    TauMetrics metrics,
    IOptions<TauClusterOptions> options,
    ILogger<SessionGrain> logger) : Grain, ISessionGrain
{
    /// <summary>Rebuilds of lost context shards one step may go through before it fails (a cluster losing silos one after another).</summary>
    private const int MaxShardRebuilds = 5;

    private readonly SemaphoreSlim turn = new(1, 1);
    private List<int>? tokens;
    private SessionCompute? compute;
    private int lastPrefill;
    private int lastReused;
    private int rebuilt;

    private string Id => this.GetPrimaryKeyString();
    private List<int> Tokens => tokens ??= UnpackTokens(state.State.Tokens);
    private SessionSpec Spec => state.State.Spec ?? throw new UnknownNameException("session", Id, "open it first");
    private ILayerWorkerGrain Worker => GrainFactory.GetGrain<ILayerWorkerGrain>(0);

    public async Task<SessionInfo> Open(SessionSpec spec)
    {
        await turn.WaitAsync();
        try
        {
            Names.Require("session", Id);
            var model = models.Get(spec.Model);
            var sampling = ToOptions(spec.Sampling);
            if (state.State.Spec is { } existing)
            {
                if (existing.Model != spec.Model || existing.Domain != spec.Domain)
                    throw new SessionConflictException($"session '{Id}' already runs model '{existing.Model}'" +
                        (existing.Domain is null ? "" : $" with domain '{existing.Domain}'") + "; open it with the same, or use another session id");
                if (existing.Sampling != spec.Sampling)
                {
                    // New options apply from the next token; a new seed restarts the generator, the same seed continues it.
                    var generator = existing.Sampling.Seed == spec.Sampling.Seed ? CurrentGenerator() : new Xoshiro256(spec.Sampling.Seed).State;
                    var previousGenerator = state.State.Generator;
                    state.State.Spec = spec;
                    state.State.Generator = PackGenerator(generator);
                    try
                    {
                        await Save();
                    }
                    catch
                    {
                        (state.State.Spec, state.State.Generator) = (existing, previousGenerator);   // as it was: a retry saves again
                        throw;
                    }
                    if (compute is not null) compute.Sampler = new Sampler(model.Config.VocabSize, sampling, generator);
                }
                return Info();
            }

            int domainVersion = 0;
            if (spec.Domain is not null)
            {
                if (model.Config.Attention != AttentionKind.Tau)
                    throw new InvalidOptionsException($"model '{spec.Model}' uses causal attention; a domain applies only to tau attention");
                var info = await domains.Current(spec.Domain);
                model.DomainFor(await domains.Get(spec.Domain, info.Version));   // the domain must have the model's head dimension
                domainVersion = info.Version;
            }
            state.State = new SessionState { Spec = spec, DomainVersion = domainVersion, Generator = PackGenerator(new Xoshiro256(sampling.Seed).State) };
            tokens = [];
            try
            {
                await state.WriteStateAsync();
            }
            catch
            {
                (state.State, tokens) = (new SessionState(), null);   // not opened: a retry opens it again
                throw;
            }
            return Info();
        }
        finally
        {
            turn.Release();
        }
    }

    public async Task<SessionInfo> Append(PromptInput prompt)
    {
        await turn.WaitAsync();
        try
        {
            var model = models.Get(Spec.Model);
            int[] ids = Tokenize(model, prompt);
            if (prompt.ExpectedLength is { } expected && expected != Tokens.Count)
            {
                if (Tokens.Count == expected + ids.Length && Tokens.Skip(expected).SequenceEqual(ids))
                {
                    await Save();   // a retry of an append that took effect (its first save may be what failed)
                    return Info();
                }
                throw new SessionConflictException($"session '{Id}' has {Tokens.Count} tokens, not the {expected} this append expected: another append came first");
            }
            await AppendTokens(model, ids);
            return Info();
        }
        finally
        {
            turn.Release();
        }
    }

    public async Task<SessionInfo> ContinueWith(PromptInput prompt)
    {
        await turn.WaitAsync();
        try
        {
            var model = models.Get(Spec.Model);
            int[] whole = Tokenize(model, prompt);
            if (whole.Length > model.Config.SequenceLen)                        // refused before anything is forgotten
                throw new ContextLengthExceededException(whole.Length, model.Config.SequenceLen);
            var (keep, rest) = SharedPrefix(model, prompt, whole);
            if (keep == 0 && Tokens.Count > 0)
                await ResetTokens();                                            // nothing in common: a new conversation starts over
            else if (keep < Tokens.Count)
            {
                Forget(keep, nothingFollows: rest.Length == 0);                 // it diverged: keep the cache of what still agrees
                await Save();
            }
            if (rest.Length == 0)
            {
                (lastPrefill, lastReused) = (0, Tokens.Count);
                return Info();
            }
            await AppendTokens(model, rest);
            return Info();
        }
        finally
        {
            turn.Release();
        }
    }

    /// <summary>
    /// How many of the session's tokens the prompt starts with, and the prompt's ids after them. Ids are compared as ids;
    /// text is compared as the text those tokens decode to, because replies come back as the text a client was shown,
    /// which need not re-encode to the ids that were sampled. The longest agreeing prefix is found by bisection.
    /// </summary>
    private (int Keep, int[] Remainder) SharedPrefix(TauModel model, PromptInput prompt, int[] whole)
    {
        var held = CollectionsMarshal.AsSpan(Tokens);
        int common = 0;
        while (common < held.Length && common < whole.Length && held[common] == whole[common]) common++;
        if (common == held.Length || prompt.Text is not { } text || model.Tokenizer is not { } tokenizer)
            return (common, whole[common..]);

        bool Agrees(int k) => text.StartsWith(tokenizer.Decode(Tokens.Take(k)), StringComparison.Ordinal);
        int lo = common, hi = held.Length;   // Agrees(lo) holds: lo ids are shared, so is their text
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (Agrees(mid)) lo = mid;
            else hi = mid - 1;
        }
        if (lo == common) return (common, whole[common..]);
        string kept = tokenizer.Decode(Tokens.Take(lo));
        return (lo, tokenizer.Encode(text[kept.Length..]).ToArray());
    }

    /// <summary>
    /// Forgets the session's tokens after the first <paramref name="keep"/>; the cache keeps what agrees, the generator runs on.
    /// A cut cache has no logits: when no new tokens follow (a retried request, a prompt that ends inside the transcript),
    /// the last kept token stays out of the cache, so that the next step runs it again and has logits to sample from.
    /// </summary>
    private void Forget(int keep, bool nothingFollows)
    {
        Tokens.RemoveRange(keep, Tokens.Count - keep);
        compute?.Inference.Truncate(Math.Min(nothingFollows ? keep - 1 : keep, compute.Inference.Length));
    }

    private static int[] Tokenize(TauModel model, PromptInput prompt)
    {
        int[] ids = prompt.Ids ?? (model.Tokenizer ?? throw new InvalidOptionsException("this model has no tokenizer: send token ids"))
            .Encode(prompt.Text ?? "").ToArray();
        if (ids.Length == 0) throw new InvalidOptionsException("the prompt is empty");
        foreach (int id in ids)
            if ((uint)id >= (uint)model.Config.VocabSize) throw new TokenOutOfRangeException(id, model.Config.VocabSize);
        return ids;
    }

    /// <summary>Appends and prefills validated ids, and persists them; on a failure the session is as it was.</summary>
    private async Task AppendTokens(TauModel model, int[] ids)
    {
        if (Tokens.Count + ids.Length > model.Config.SequenceLen)
            throw new ContextLengthExceededException(Tokens.Count + ids.Length, model.Config.SequenceLen);
        var c = await EnsureCompute();
        int before = Tokens.Count;
        Tokens.AddRange(ids);
        try
        {
            int lacking = Tokens.Count - c.Inference.Length;
            await Step(c, sample: false);
            (lastPrefill, lastReused) = (lacking, before);
        }
        catch
        {
            Tokens.RemoveRange(before, ids.Length);
            _ = ReleaseCompute();   // rebuilt from the persisted tokens on next use
            throw;
        }
        await Save();
    }

    public async IAsyncEnumerable<GeneratedToken> Generate(GenerateRequest request, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        long started = Stopwatch.GetTimestamp();
        await turn.WaitAsync(cancellation);
        int unsaved = 0;
        try
        {
            var model = models.Get(Spec.Model);
            if (request.TargetLength > model.Config.SequenceLen)
                throw new ContextLengthExceededException(request.TargetLength, model.Config.SequenceLen);
            if (request.OutputStart < 0 || request.OutputStart > Tokens.Count || request.TargetLength < request.OutputStart)
                throw new InvalidOptionsException($"cannot generate positions {request.OutputStart}…{request.TargetLength} in a session of {Tokens.Count} tokens");
            if (Tokens.Count == 0) throw new InvalidOptionsException($"session '{Id}' has no tokens: append a prompt first");

            var c = await EnsureCompute();
            var decoder = model.Tokenizer is { } tokenizer ? new IncrementalDecoder(tokenizer) : null;
            var stops = new StopTrimmer(request.Stop ?? []);

            // A resumed request first gets again what this session already generated for it (the caller skips what it
            // has), and its stop sequences see that text too, so a resumed request stops where the first one did.
            for (int p = request.OutputStart; p < Math.Min(Tokens.Count, request.TargetLength) && !stops.Stopped; p++)
            {
                string? text = decoder?.Add(Tokens[p]);
                stops.Push(text);
                yield return new GeneratedToken(p, Tokens[p], Finish(text, decoder, p + 1 == request.TargetLength || stops.Stopped));
            }

            long last = started;
            while (Tokens.Count < request.TargetLength && !cancellation.IsCancellationRequested && !stops.Stopped)
            {
                int next = await Step(c, sample: true);
                Tokens.Add(next);
                long now = Stopwatch.GetTimestamp();
                (last == started ? metrics.TimeToFirstToken : metrics.InterTokenLatency).Record(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
                metrics.GeneratedTokens.Add(1);
                last = now;
                if (++unsaved >= options.Value.CheckpointEvery)
                {
                    await Save();
                    unsaved = 0;
                }
                string? text = decoder?.Add(next);
                stops.Push(text);
                yield return new GeneratedToken(Tokens.Count - 1, next, Finish(text, decoder, Tokens.Count == request.TargetLength || stops.Stopped));
            }
        }
        finally
        {
            try
            {
                if (unsaved > 0) await Save();
            }
            finally
            {
                turn.Release();   // a failed save must not leave the session locked
            }
        }
    }

    public async Task<SessionInfo> Fork(string childSessionId)
    {
        await turn.WaitAsync();
        try
        {
            Names.Require("session", childSessionId);
            if (childSessionId == Id) throw new InvalidOptionsException("a session cannot fork into itself");
            var source = new ForkSource(Spec, state.State.DomainVersion, PackTokens(Tokens), PackGenerator(CurrentGenerator()),
                silo.SiloAddress.ToString(), compute?.Handle ?? Guid.Empty);
            // This session holds its turn until the child has copied its cache, so the cache cannot change meanwhile.
            return await GrainFactory.GetGrain<ISessionGrain>(childSessionId).AdoptFrom(source);
        }
        finally
        {
            turn.Release();
        }
    }

    public async Task<SessionInfo> AdoptFrom(ForkSource source)
    {
        await turn.WaitAsync();
        try
        {
            if (state.State.Spec is not null) throw new SessionConflictException($"session '{Id}' already exists");
            state.State = new SessionState { Spec = source.Spec, DomainVersion = source.DomainVersion, Tokens = source.Tokens, Generator = source.GeneratorState };
            tokens = UnpackTokens(source.Tokens);
            await state.WriteStateAsync();

            // Prefix sharing: on the parent's silo, copy its cache instead of recomputing it. The last token is run
            // again so that the child has logits of its own.
            // A parent with context shards is replayed instead: the child gets shards of its own.
            if (source.ParentSilo == silo.SiloAddress.ToString() && local.TryGet(source.CacheHandle, out var parent) && Tokens.Count > 0
                && !parent.Inference.HasExternalContext)
            {
                var model = models.Get(source.Spec.Model);
                var inference = parent.Inference.CopyPrefix(Math.Min(parent.Inference.Length, Tokens.Count - 1));
                Attach(new SessionCompute(inference, new Sampler(model.Config.VocabSize, ToOptions(source.Spec.Sampling), CurrentGenerator())));
                rebuilt = Tokens.Count - inference.Length;   // run when the child first computes
            }
            return Info();
        }
        finally
        {
            turn.Release();
        }
    }

    public async Task<SessionInfo> Reset()
    {
        await turn.WaitAsync();
        try
        {
            await ResetTokens();
            return Info();
        }
        finally
        {
            turn.Release();
        }
    }

    private async Task ResetTokens()
    {
        var spec = Spec;
        Tokens.Clear();
        var generator = new Xoshiro256(spec.Sampling.Seed).State;
        state.State.Generator = PackGenerator(generator);
        if (compute is not null)
        {
            compute.Inference.Truncate(0);
            compute.Sampler.State = generator;
        }
        (lastPrefill, lastReused) = (0, 0);
        await Save();
    }

    public async Task Delete()
    {
        await turn.WaitAsync();
        try
        {
            await state.ClearStateAsync();
            state.State = new SessionState();
            tokens = null;
            await ReleaseCompute();   // a deleted session's shards are gone when Delete returns
            DeactivateOnIdle();
        }
        finally
        {
            turn.Release();
        }
    }

    public Task<SessionInfo> GetInfo() => Task.FromResult(Info());

    public async Task<ContextShardInfo[]> GetShards() =>
        compute?.Shards is { Count: > 0 } shards ? await Task.WhenAll(shards.Grains.Select(g => g.GetInfo())) : [];

    public Task<int[]> GetTokens() => Task.FromResult(state.State.Spec is null ? [] : Tokens.ToArray());

    public Task<string?> GetText() =>
        Task.FromResult(state.State.Spec is { } spec ? models.Get(spec.Model).Tokenizer?.Decode(Tokens) : null);

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _ = ReleaseCompute();   // best effort: deactivation does not wait for shards on other silos
        return Task.CompletedTask;
    }

    /// <summary>
    /// Runs what the cache lacks through the model (and samples, when asked). A lost context shard is computed again from
    /// the tokens and the step retried. Any other failure leaves the cache in an unknown state, so it is dropped and
    /// rebuilt from the persisted tokens on next use.
    /// </summary>
    private async Task<int> Step(SessionCompute c, bool sample)
    {
        for (int rebuild = 1; ; rebuild++)
        {
            try
            {
                return await RunLacking(c, sample);
            }
            catch (ContextShardLostException lost) when (rebuild <= MaxShardRebuilds)
            {
                logger.LogWarning(lost, "Session {Session}: context shard from position {Start} lost; computing it again from the tokens", Id, lost.Start);
                metrics.ShardRebuilds.Add(1);
                c.Inference.Truncate(lost.Start);   // the lost shard and everything after it; earlier shards still hold theirs
                rebuilt += Tokens.Count - c.Inference.Length;
                await Task.Delay(TimeSpan.FromMilliseconds(200 * rebuild));   // membership needs a moment to route around a dead silo
            }
            catch
            {
                _ = ReleaseCompute();
                throw;
            }
        }
    }

    /// <summary>
    /// On the λ index with a budget, a long prefill runs a segment at a time and sealed segments move to context shards
    /// between them, so the silo never holds much more than the budget.
    /// </summary>
    private async Task<int> RunLacking(SessionCompute c, bool sample)
    {
        var lacking = Lacking(c);
        if (options.Value.ContextBudgetBytes <= 0 || c.Inference.Cache is not IndexedTauCache) return await Compute(c, lacking, sample);
        int next = -1;
        for (int offset = 0; offset == 0 || offset < lacking.Length; offset += LambdaIndex.SegmentSize)
        {
            int end = Math.Min(lacking.Length, offset + LambdaIndex.SegmentSize);
            next = await Compute(c, lacking[offset..end], sample && end == lacking.Length);
            await Offload(c);
        }
        return next;
    }

    /// <summary>A decode step joins the silo's continuous batch directly; prefills, and sessions with shards, go to a layer worker.</summary>
    private async Task<int> Compute(SessionCompute c, int[] tokens, bool sample) =>
        sample && tokens.Length == 1 && !c.Inference.HasExternalContext
            ? await batcher.Step(c.Inference, tokens[0], c.Sampler)
            : await Worker.Step(new ComputeStep(c.Handle, tokens, sample));

    /// <summary>
    /// Moves the oldest sealed segments to a new context shard while the cache is over its budget. A move that fails
    /// changes nothing: the session keeps them and tries again after its next step.
    /// </summary>
    private async Task Offload(SessionCompute c)
    {
        long budget = options.Value.ContextBudgetBytes;
        if (c.Inference.Cache is not IndexedTauCache cache) return;
        while (cache.Bytes > budget && cache.SealedSegments > 0)
        {
            long segmentBytes = cache.PeekSegments(1)[0].Sum(s => s.Bytes);
            int perShard = (int)Math.Clamp(budget / segmentBytes, 1, cache.SealedSegments);
            c.Shards ??= new ContextShards(GrainFactory, Id, c.Inference.Model.Config, cache.Domain.Temperature, metrics);
            try
            {
                await c.Shards.Offload(cache, perShard);
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "Session {Session}: could not move {Segments} segments to a context shard; keeping them here", Id, perShard);
                return;
            }
        }
    }

    /// <summary>The last token of a reply carries whatever text the decoder held back, so the reply's text is whole.</summary>
    private static string? Finish(string? text, IncrementalDecoder? decoder, bool last) =>
        last && decoder is not null ? text + decoder.Flush() : text;

    /// <summary>The in-memory cache, rebuilt by replaying the persisted tokens when this activation has none.</summary>
    private async Task<SessionCompute> EnsureCompute()
    {
        if (compute is not null) return compute;
        var spec = Spec;
        var model = models.Get(spec.Model);
        var domain = spec.Domain is null ? null : model.DomainFor(await domains.Get(spec.Domain, state.State.DomainVersion));
        var inference = new InferenceSession(model, domain);
        var c = Attach(new SessionCompute(inference, new Sampler(model.Config.VocabSize, ToOptions(spec.Sampling), CurrentGenerator())));
        if (Tokens.Count > 0) await Step(c, sample: false);
        rebuilt = Tokens.Count;
        return c;
    }

    private SessionCompute Attach(SessionCompute c)
    {
        _ = ReleaseCompute();
        local.Add(c);
        return compute = c;
    }

    /// <summary>Forgets the in-memory cache and drops its context shards; the task ends when the shards have answered (it never faults).</summary>
    private Task ReleaseCompute()
    {
        var released = compute;
        compute = null;
        if (released is null) return Task.CompletedTask;
        local.Remove(released);
        return released.Shards?.DropAll() ?? Task.CompletedTask;
    }

    /// <summary>Tokens the cache has not seen yet: a prompt just appended, or the token sampled last.</summary>
    private int[] Lacking(SessionCompute c) => Tokens.Skip(c.Inference.Length).ToArray();

    private RngState CurrentGenerator() =>
        compute?.Sampler.State ?? (state.State.Generator is [var a, var b, var c, var d] ? new RngState(a, b, c, d) : new Xoshiro256(Spec.Sampling.Seed).State);

    private async Task Save()
    {
        state.State.Tokens = PackTokens(Tokens);
        state.State.Generator = PackGenerator(CurrentGenerator());
        await state.WriteStateAsync();
    }

    private SessionInfo Info()
    {
        var cache = compute?.Inference.Cache;
        return new SessionInfo(Id, state.State.Spec is not null, state.State.Spec?.Model, state.State.Spec?.Domain, state.State.Spec is null ? 0 : Tokens.Count,
            cache?.Bytes ?? 0, cache?.KeyValueBaselineBytes ?? 0, silo.SiloAddress.ToString(), state.State.Spec?.Sampling, lastPrefill, rebuilt, lastReused,
            compute?.Shards?.Count ?? 0, compute?.Shards?.Bytes ?? 0);
    }

    public static SamplingOptions ToOptions(SamplingSettings s) => new SamplingOptions(s.Temperature, s.TopK, s.TopP, s.Seed).Validate();

    private static byte[] PackTokens(List<int> ids)
    {
        var bytes = new byte[ids.Count * sizeof(int)];
        for (int i = 0; i < ids.Count; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * sizeof(int)), ids[i]);
        return bytes;
    }

    private static List<int> UnpackTokens(byte[] bytes)
    {
        var ids = new List<int>(bytes.Length / sizeof(int));
        for (int i = 0; i + sizeof(int) <= bytes.Length; i += sizeof(int)) ids.Add(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(i)));
        return ids;
    }

    private static ulong[] PackGenerator(RngState s) => [s.S0, s.S1, s.S2, s.S3];
}
