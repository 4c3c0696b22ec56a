using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// One conversation. Reentrant so that an ongoing generation stream and other calls can be accepted, with a
/// FIFO turnstile so that they are still served one at a time, in order.
/// </summary>
[Reentrant]
[PreferAccelerators]     // on silos with GPUs, when there are any
[PreferLocalPlacement]   // a client's sessions land on random silos; a fork lands beside its parent and copies its cache
public sealed class SessionGrain(
    [PersistentState("session", TauStorage.Name)] IPersistentState<SessionState> state,
    ModelStore models,
    DomainStore domains,
    LocalSessions local,
    ILocalSiloDetails silo,
    ComputeWorkers compute,
    TauMetrics metrics,
    IOptions<TauClusterOptions> options,
    ILogger<SessionGrain> logger) : Grain, ISessionGrain
{
    private readonly Turnstile turnstile = new();
    private Transcript? tokens;
    private SessionRuntime? runtime;
    private int lastPrefill;
    private int lastReused;
    private TokenStream? generation;   // the tokens of the completion under way
    private (CompletionRecord Record, TokenLogprob[] Scores)? promptScores;   // of the completion begun last, if it scored its prompt

    private string Id => this.GetPrimaryKeyString();
    private Transcript Tokens => tokens ??= Transcript.Unpack(state.State.Tokens);
    private SessionSpec Spec => state.State.Spec ?? throw new UnknownNameException("session", Id, "open it first");
    private SessionRuntime Runtime => runtime ??= new SessionRuntime(Id, GrainFactory, compute, local, options.Value, metrics, logger);
    private SessionCompute? Live => runtime?.Current;   // the live cache, if this activation has one

    public async Task<SessionInfo> Open(SessionSpec spec)
    {
        using var turn = await turnstile.Enter();
        await OpenWith(spec);
        return Info();
    }

    /// <summary>Creates the session, or checks an existing one runs the same model and domain and takes the new sampling options.</summary>
    private async Task OpenWith(SessionSpec spec)
    {
        Names.Require("session", Id);
        var model = models.Get(spec.Model);
        var sampling = spec.Sampling.ToOptions();
        RequireSameModel(spec);
        if (state.State.Spec is { } existing)
        {
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
                if (Live is not null) Live.Sampler = new Sampler(model.Config.VocabSize, sampling, generator);
            }
            return;
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
    }

    /// <summary>Refuses a spec whose model or domain is not the one an existing session runs.</summary>
    private void RequireSameModel(SessionSpec spec)
    {
        if (state.State.Spec is { } existing && (existing.Model != spec.Model || existing.Domain != spec.Domain))
            throw new SessionConflictException($"session '{Id}' already runs model '{existing.Model}'" +
                (existing.Domain is null ? "" : $" with domain '{existing.Domain}'") + "; open it with the same, or use another session id");
    }

    public async Task<SessionInfo> Append(PromptInput prompt)
    {
        using var turn = await turnstile.Enter();
        var model = models.Get(Spec.Model);
        int[] ids = Tokens.Place(model, prompt, PromptPlacement.After).Remainder;
        if (prompt.ExpectedLength is { } expected && expected != Tokens.Count)
        {
            if (Tokens.AlreadyAppended(expected, ids))
            {
                await Save();   // a retry of an append that took effect (its first save may be what failed)
                return Info();
            }
            throw new SessionConflictException($"session '{Id}' has {Tokens.Count} tokens, not the {expected} this append expected: another append came first");
        }
        state.State.LastCompletion = null;   // the session moved on: no earlier completion can resume
        await AppendTokens(model, ids);
        return Info();
    }

    /// <summary>
    /// Forgets the session's tokens after the first <paramref name="keep"/>; the cache keeps what agrees, the generator runs on.
    /// A cut cache has no logits: when no new tokens follow (a retried request, a prompt that ends inside the transcript),
    /// the last kept token stays out of the cache, so that the next step runs it again and has logits to sample from.
    /// </summary>
    private void Forget(int keep, bool nothingFollows)
    {
        Tokens.Truncate(keep);
        Live?.Inference.Truncate(Math.Min(nothingFollows ? keep - 1 : keep, Live.Inference.Length));
    }

    /// <summary>
    /// Appends and prefills validated ids, and persists them; on a failure the session is as it was. With
    /// <paramref name="scoreTop"/>, the whole transcript runs again, every token scored (a cache keeps no logits of
    /// its rows), and the scores of its positions are returned.
    /// </summary>
    private async Task<TokenLogprob[]?> AppendTokens(TauModel model, int[] ids, int? scoreTop = null)
    {
        if (Tokens.Count + ids.Length > model.Config.SequenceLen)
            throw new ContextLengthExceededException(Tokens.Count + ids.Length, model.Config.SequenceLen);
        var c = await EnsureCompute();
        int before = Tokens.Count;
        Tokens.AddRange(ids);
        TokenLogprob[]? scores = null;
        int lacking = scoreTop is null ? Tokens.Count - c.Inference.Length : Tokens.Count;   // scoring runs the whole transcript
        try
        {
            if (scoreTop is { } top)
            {
                c.Inference.Truncate(0);
                scores = Logprobs(await Runtime.Score(c, Tokens, top), from: 0);
            }
            else await Runtime.Step(c, Tokens, sample: false);
            (lastPrefill, lastReused) = (lacking, before);
        }
        catch
        {
            Tokens.Truncate(before);
            _ = Runtime.Release();   // rebuilt from the persisted tokens on next use
            throw;
        }
        await Save();
        return scores;
    }

    /// <summary>The API's log-probabilities of the transcript's positions from <paramref name="from"/> on (none for a first token).</summary>
    private TokenLogprob[] Logprobs(TokenScore?[] scores, int from) =>
        scores.Select((score, i) => score is null ? new TokenLogprob(Tokens[from + i], null, [], []) : Logprob(score)).ToArray();

    private static TokenLogprob Logprob(TokenScore score) => new(score.Token, score.Logprob, score.TopTokens, score.TopLogprobs);

    public async IAsyncEnumerable<CompletionChunk> Complete(CompletionRequest request, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        long started = Stopwatch.GetTimestamp();
        using var turn = await turnstile.Enter(cancellation);
        using var generating = local.BeginGeneration();
        int unsaved = 0;
        Task? checkpoint = null;
        try
        {
            // A re-sent request resumes: what this session already generated for it comes again (the caller skips
            // what it has), through the same stop sequences, so a resumed request stops where the first one did.
            var record = await BeginOrResume(request);
            var reply = new Completion(models.Get(Spec.Model).Tokenizer, Completion.StopsOf(request), record);
            var c = await EnsureCompute();
            int? top = request.Logprobs ?? (request.ScorePrompt ? 0 : null);
            var scored = top is { } known ? await KnownScores(request, record, c, known) : null;   // positions 0… or Start…, not drawn now
            CompletionChunk Scored(CompletionChunk chunk, TokenLogprob? logprob) => top is null ? chunk : chunk with
            {
                Logprob = logprob,
                PromptLogprobs = request.ScorePrompt && chunk.Position == reply.Start ? scored![..reply.Start] : null,
            };
            for (int p = reply.Start; p < Tokens.Count && !reply.Finished; p++)
                yield return Finished(Scored(reply.Next(p, Tokens[p]), scored?[p - (Tokens.Count - scored.Length)]));
            if (reply.Finished || cancellation.IsCancellationRequested) yield break;

            // The tokens compute ahead of this loop, so a step never waits for the caller's round trip; what was
            // computed but not handed out when the reply ends is undone by the stream's Stop, below.
            c.Sampler.BeginCompletion(Tokens.AsSpan(), reply.Start);   // the penalties' counts, from the transcript: the same on any silo
            var drawn = c.Sampler.Scores = top is { } t ? new DrawnScores(t) : null;
            var stream = generation = Runtime.Generate(c, Tokens, reply.Target - Tokens.Count);
            long last = started;
            while (!reply.Finished && !cancellation.IsCancellationRequested)
            {
                int next = await stream.Next();
                long now = Stopwatch.GetTimestamp();
                (last == started ? metrics.TimeToFirstToken : metrics.InterTokenLatency).Record(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
                metrics.GeneratedTokens.Add(1);
                local.Generated(c);
                last = now;
                if (++unsaved >= options.Value.CheckpointEvery)
                {
                    // Checkpoints leave the critical path: the write runs while the next tokens compute; one at a time.
                    if (checkpoint is not null) await checkpoint;
                    checkpoint = Save();
                    unsaved = 0;
                }
                var chunk = Scored(reply.Next(Tokens.Count - 1, next), drawn is null ? null : Logprob(drawn.Take()));
                if (reply.Finished)
                {
                    // Undo what was computed past the end before the last chunk reports the session.
                    await stream.Stop();
                    generation = null;
                }
                yield return Finished(chunk);
            }
        }
        finally
        {
            try
            {
                if (generation is { } ending) await ending.Stop();
                if (checkpoint is not null) await checkpoint;
                if (unsaved > 0) await Save();   // a failed save still ends the turn: the using releases it
            }
            finally
            {
                generation = null;
                if (Live is { } live) live.Sampler.Scores = null;
            }
        }
    }

    /// <summary>
    /// The scores of the positions this call hands out without drawing them: the prompt's, when asked (those its
    /// <see cref="Begin"/> computed, unless this activation did not begin it), and those of a resumed request's reply
    /// so far, computed again on a copy of the cache. They end where the transcript ends.
    /// </summary>
    private async Task<TokenLogprob[]?> KnownScores(CompletionRequest request, CompletionRecord record, SessionCompute c, int top)
    {
        if (request.ScorePrompt && promptScores is { } begun && ReferenceEquals(begun.Record, record) && Tokens.Count == record.Start)
            return begun.Scores;
        int from = request.ScorePrompt ? 0 : record.Start;
        return from < Tokens.Count ? Logprobs(await Runtime.ScoreCopy(c, Tokens, from, top), from) : null;
    }

    /// <summary>The last chunk of a reply carries the session as it stands.</summary>
    private CompletionChunk Finished(CompletionChunk chunk) => chunk.Finish is null ? chunk : chunk with { Session = Info() };

    /// <summary>The completion this request already began here (a resent or prepared request), or a new one.</summary>
    private async Task<CompletionRecord> BeginOrResume(CompletionRequest request) =>
        state.State.LastCompletion is { RequestId: { } id } record && id == request.RequestId ? record : await Begin(request);

    /// <summary>
    /// Starts a new completion: checks the spec, the prompt and every limit before the session changes, then opens the
    /// session (or takes the new options), puts the prompt in it, and saves the completion's record with its tokens.
    /// </summary>
    private async Task<CompletionRecord> Begin(CompletionRequest request)
    {
        var spec = request.Spec ?? Spec;
        RequireSameModel(spec);
        var model = models.Get(spec.Model);
        spec.Sampling.Validate();
        if (request.MaxTokens < 1) throw new InvalidOptionsException($"max_tokens = {request.MaxTokens} must be at least 1");

        var (keep, rest) = Tokens.Place(model, request.Prompt, request.Placement);
        int start = keep + rest.Length;
        if (start == 0) throw new InvalidOptionsException($"session '{Id}' has no tokens: send a prompt");
        if ((long)start + request.MaxTokens > model.Config.SequenceLen)
            throw new ContextLengthExceededException((long)start + request.MaxTokens, model.Config.SequenceLen,
                $"the prompt ({start} tokens) and max_tokens ({request.MaxTokens})");

        if (request.Spec is not null) await OpenWith(request.Spec);
        if (keep == 0 && Tokens.Count > 0)
            await ResetTokens();                                // nothing in common: a new conversation starts over
        else if (keep < Tokens.Count)
            Forget(keep, nothingFollows: rest.Length == 0);     // it diverged: keep the cache of what still agrees

        promptScores = null;
        var previous = state.State.LastCompletion;
        var record = state.State.LastCompletion = new CompletionRecord(request.RequestId, start, start + request.MaxTokens,
            new PromptUsage(start, CachedTokens: keep, PrefilledTokens: rest.Length));
        try
        {
            // Saves the record with the tokens. A prompt whose scores were asked for runs again whole, cached or not.
            int? scoreTop = request.ScorePrompt ? request.Logprobs ?? 0 : null;
            if (rest.Length > 0 || scoreTop is not null) promptScores = await AppendTokens(model, rest, scoreTop) is { } scores ? (record, scores) : null;
            else await Save();
        }
        catch
        {
            state.State.LastCompletion = previous;
            throw;
        }
        if (rest.Length == 0) lastPrefill = 0;
        lastReused = keep;
        return record;
    }

    public async Task<PromptUsage> Prepare(CompletionRequest request)
    {
        using var turn = await turnstile.Enter();
        var record = await BeginOrResume(request);
        await EnsureCompute();   // the prompt's cache, live here, for forks to copy
        return record.Prompt;
    }

    public async Task<SessionInfo> Fork(string childSessionId)
    {
        using var turn = await turnstile.Enter();
        Names.Require("session", childSessionId);
        if (childSessionId == Id) throw new InvalidOptionsException("a session cannot fork into itself");
        var source = new ForkSource(Spec, state.State.DomainVersion, Tokens.Pack(), PackGenerator(CurrentGenerator()),
            silo.SiloAddress.ToString(), Live?.Handle ?? Guid.Empty);
        // This session holds its turn until the child has copied its cache, so the cache cannot change meanwhile.
        return await GrainFactory.GetGrain<ISessionGrain>(childSessionId).AdoptFrom(source);
    }

    public async Task<SessionInfo> AdoptFrom(ForkSource source)
    {
        using var turn = await turnstile.Enter();
        if (state.State.Spec is not null) throw new SessionConflictException($"session '{Id}' already exists");
        state.State = new SessionState { Spec = source.Spec, DomainVersion = source.DomainVersion, Tokens = source.Tokens, Generator = source.GeneratorState };
        tokens = Transcript.Unpack(source.Tokens);
        await state.WriteStateAsync();

        // Prefix sharing: on the parent's silo, copy its cache instead of recomputing it. The last token is run
        // again so that the child has logits of its own.
        // A parent with context shards is replayed instead: the child gets shards of its own.
        if (source.ParentSilo == silo.SiloAddress.ToString() && local.TryGet(source.CacheHandle, out var parent) && Tokens.Count > 0
            && !parent.Inference.HasExternalContext)
        {
            var model = models.Get(source.Spec.Model);
            var inference = parent.Inference.CopyPrefix(Math.Min(parent.Inference.Length, Tokens.Count - 1));
            Runtime.Attach(new SessionCompute(Id, source.Spec.Model, source.Spec.Domain, inference, new Sampler(model.Config.VocabSize, source.Spec.Sampling.ToOptions(), CurrentGenerator())));
            Runtime.Rebuilt = Tokens.Count - inference.Length;   // run when the child first computes
        }
        return Info();
    }

    public async Task<SessionInfo> Reset()
    {
        using var turn = await turnstile.Enter();
        await ResetTokens();
        return Info();
    }

    private async Task ResetTokens()
    {
        var spec = Spec;
        Tokens.Clear();
        var generator = new Xoshiro256(spec.Sampling.Seed).State;
        state.State.Generator = PackGenerator(generator);
        state.State.LastCompletion = null;
        if (Live is not null)
        {
            Live.Inference.Truncate(0);
            Live.Sampler.State = generator;
        }
        (lastPrefill, lastReused) = (0, 0);
        await Save();
    }

    public async Task Delete()
    {
        using var turn = await turnstile.Enter();
        await state.ClearStateAsync();
        state.State = new SessionState();
        tokens = null;
        await Runtime.Release(dispose: true);   // a deleted session's shards and device memory are gone when Delete returns
        DeactivateOnIdle();
    }

    public Task<SessionInfo> GetInfo() => Task.FromResult(Info());

    public async Task<ContextShardInfo[]> GetShards() =>
        Live?.Shards is { Count: > 0 } shards ? await Task.WhenAll(shards.Grains.Select(g => g.GetInfo())) : [];

    public Task<int[]> GetTokens() => Task.FromResult(state.State.Spec is null ? [] : Tokens.ToArray());

    public Task<string?> GetText() =>
        Task.FromResult(state.State.Spec is { } spec ? models.Get(spec.Model).Tokenizer?.Decode(Tokens) : null);

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _ = Runtime.Release(dispose: true);   // best effort: deactivation does not wait for shards on other silos
        return Task.CompletedTask;
    }

    /// <summary>The in-memory cache, rebuilt by replaying the persisted tokens when this activation has none.</summary>
    private async Task<SessionCompute> EnsureCompute()
    {
        if (Live is not null) return Live;
        var spec = Spec;
        var model = models.Get(spec.Model);
        var domain = spec.Domain is null ? null : model.DomainFor(await domains.Get(spec.Domain, state.State.DomainVersion));
        var inference = compute.NewSession(model, domain);
        var c = Runtime.Attach(new SessionCompute(Id, spec.Model, spec.Domain, inference, new Sampler(model.Config.VocabSize, spec.Sampling.ToOptions(), CurrentGenerator())));
        if (Tokens.Count > 0) await Runtime.Step(c, Tokens, sample: false);
        Runtime.Rebuilt = Tokens.Count;
        return c;
    }

    /// <summary>The generator as of the transcript: during a generation, the sampler is already ahead of it.</summary>
    private RngState CurrentGenerator() =>
        generation?.Generator ?? Live?.Sampler.State ?? (state.State.Generator is [var a, var b, var c, var d] ? new RngState(a, b, c, d) : new Xoshiro256(Spec.Sampling.Seed).State);

    private async Task Save()
    {
        state.State.Tokens = Tokens.Pack();
        state.State.Generator = PackGenerator(CurrentGenerator());
        try
        {
            await state.WriteStateAsync();
        }
        catch (Orleans.Storage.InconsistentStateException)
        {
            // Another activation wrote the session since this one read it: one on a silo that was cut off and declared
            // dead, whose write Redis received only when the link came back. This activation's state is stale, so it
            // goes, and the caller's retry reads the session afresh. Orleans does that itself when the exception leaves
            // a grain call, but not when it ends a stream (the stream's extension reports it as a value).
            DeactivateOnIdle();
            throw;
        }
    }

    private SessionInfo Info()
    {
        var cache = Live?.Inference.Cache;
        return new SessionInfo(Id, state.State.Spec is not null, state.State.Spec?.Model, state.State.Spec?.Domain, state.State.Spec is null ? 0 : Tokens.Count,
            cache?.Bytes ?? 0, cache?.KeyValueBaselineBytes ?? 0, silo.SiloAddress.ToString(), state.State.Spec?.Sampling, lastPrefill, runtime?.Rebuilt ?? 0, lastReused,
            Live?.Shards?.Count ?? 0, Live?.Shards?.Bytes ?? 0, compute.Device.Name, (cache as DeviceCache)?.DeviceBytes ?? 0);
    }

    private static ulong[] PackGenerator(RngState s) => [s.S0, s.S1, s.S2, s.S3];
}
