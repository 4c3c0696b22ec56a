using Microsoft.Extensions.DependencyInjection;
using System.Runtime.CompilerServices;

namespace TauCluster.Grains;

/// <summary>
/// The client side of a generation: opens a session, appends a prompt and streams the reply, riding out the loss
/// of the silo that hosts the session. A lost stream is requested again with the same absolute target; the session
/// resumes from its last checkpoint on another silo and regenerates identically, and positions already received are
/// skipped, so the caller sees every position exactly once and the same tokens as without the failure.
/// </summary>
public sealed class TauSessionClient(IGrainFactory grains)
{
    private const int MaxAttempts = 40;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1.5);

    public ISessionGrain Session(string id) => grains.GetGrain<ISessionGrain>(id);

    /// <summary>
    /// Raised each time a generation stream is lost to the cluster (its silo died, a message was rejected) and is about to
    /// be requested again: what a caller logs or counts as a failover. It runs on the generating caller's flow, before the
    /// retry's pause; it should be quick and must not throw.
    /// </summary>
    public event Action<StreamResume>? Resuming;

    public Task<SessionInfo> Open(string sessionId, SessionSpec spec, CancellationToken cancellation = default) =>
        Retry(() => Session(sessionId).Open(spec), cancellation);

    /// <summary>Appends a prompt exactly once, even when a retry follows a lost reply.</summary>
    public async Task<SessionInfo> Append(string sessionId, PromptInput prompt, CancellationToken cancellation = default)
    {
        var session = Session(sessionId);
        int expected = prompt.ExpectedLength ?? (await Retry(session.GetInfo, cancellation)).Length;
        return await Retry(() => session.Append(prompt with { ExpectedLength = expected }), cancellation);
    }

    public Task<SessionInfo> Info(string sessionId, CancellationToken cancellation = default) => Retry(Session(sessionId).GetInfo, cancellation);

    /// <summary>
    /// Generates up to <paramref name="maxTokens"/> tokens after position <paramref name="from"/>: the length that the
    /// caller's own prompt left the session at (as its append returned it), else the session's length now.
    /// </summary>
    public async IAsyncEnumerable<GeneratedToken> Generate(string sessionId, int maxTokens, string[]? stop = null,
        [EnumeratorCancellation] CancellationToken cancellation = default, int? from = null)
    {
        var session = Session(sessionId);
        if (maxTokens < 1) throw new Engine.InvalidOptionsException($"max tokens = {maxTokens} must be at least 1");
        int start = from ?? (await Retry(session.GetInfo, cancellation)).Length;
        long target = (long)start + maxTokens;
        if (target > int.MaxValue) throw new Engine.InvalidOptionsException($"max tokens = {maxTokens} is more than any context holds");
        var request = new GenerateRequest((int)target, start, stop);
        int next = request.OutputStart, attempts = 0;
        while (next < request.TargetLength)
        {
            var stream = session.Generate(request, cancellation).GetAsyncEnumerator(cancellation);
            Exception? lostTo = null;
            try
            {
                while (true)
                {
                    var (moved, failure) = await TryMoveNext(stream, cancellation);
                    if (failure is not null)
                    {
                        if (++attempts > MaxAttempts) throw failure;
                        lostTo = failure;
                        break;
                    }
                    if (!moved) break;
                    if (stream.Current.Position < next) continue;   // regenerated after a failover: already delivered
                    next = stream.Current.Position + 1;
                    attempts = 0;
                    yield return stream.Current;
                }
            }
            finally
            {
                try { await stream.DisposeAsync(); }
                catch (Exception e) when (IsTransient(e, cancellation)) { }   // the silo holding the stream is gone
            }
            if (lostTo is null) yield break;   // the target or a stop string was reached
            Resuming?.Invoke(new StreamResume(sessionId, next, attempts, lostTo));
            await Task.Delay(RetryDelay, cancellation);
        }
    }

    /// <summary>Makes the session hold exactly this prompt, reusing the cache of what it already holds (see <see cref="ISessionGrain.ContinueWith"/>).</summary>
    public Task<SessionInfo> ContinueWith(string sessionId, PromptInput prompt, CancellationToken cancellation = default) =>
        Retry(() => Session(sessionId).ContinueWith(prompt), cancellation);

    /// <summary>
    /// A completion as OpenAI-style APIs return it: text deltas without the stop sequence, then a last update with the
    /// finish reason ("stop" when a stop sequence ended it, "length" when the token budget did).
    /// </summary>
    public async IAsyncEnumerable<CompletionUpdate> Complete(string sessionId, int maxTokens, IReadOnlyList<string> stops,
        [EnumeratorCancellation] CancellationToken cancellation = default, int? from = null)
    {
        var trimmer = new StopTrimmer(stops);
        await foreach (var token in Generate(sessionId, maxTokens, stops.Count > 0 ? stops.ToArray() : null, cancellation, from))
        {
            yield return new CompletionUpdate(trimmer.Push(token.Text), token.Id, null);
            if (trimmer.Stopped) break;
        }
        yield return new CompletionUpdate(trimmer.Flush(), null, trimmer.Stopped ? "stop" : "length");
    }

    private static async Task<(bool Moved, Exception? Failure)> TryMoveNext(IAsyncEnumerator<GeneratedToken> stream, CancellationToken cancellation)
    {
        try
        {
            return (await stream.MoveNextAsync(), null);
        }
        catch (Exception e) when (IsTransient(e, cancellation))
        {
            return (false, e);
        }
    }

    /// <summary>Retries a call while its failure is the cluster's (a silo lost, a message rejected), not the request's.</summary>
    public static async Task<T> Retry<T>(Func<Task<T>> call, CancellationToken cancellation)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (attempt < MaxAttempts && IsTransient(e, cancellation))
            {
                await Task.Delay(RetryDelay, cancellation);
            }
        }
    }

    /// <summary>
    /// Failures of the cluster rather than of the request: errors a grain raises about its input (TauCluster's typed
    /// errors, argument errors) are never retried, nor is a cancellation the caller asked for.
    /// </summary>
    public static bool IsTransient(Exception e, CancellationToken cancellation) =>
        !cancellation.IsCancellationRequested && e is SiloUnavailableException or OrleansMessageRejectionException
            or EnumerationAbortedException or TimeoutException or GatewayTooBusyException
            or Orleans.Runtime.Messaging.ConnectionFailedException or OperationCanceledException
            or OrleansException { InnerException: SiloUnavailableException or Orleans.Runtime.Messaging.ConnectionFailedException };
}

public static class TauClientHosting
{
    /// <summary>Lets TauCluster's typed errors (unknown model, invalid options, …) arrive at this client as themselves.</summary>
    public static IClientBuilder AddTauClient(this IClientBuilder builder)
    {
        builder.Services.AddTauErrors();
        return builder;
    }

    /// <summary>TauCluster's typed errors cross Orleans as themselves (silos and clients both need this).</summary>
    public static IServiceCollection AddTauErrors(this IServiceCollection services) =>
        services.Configure<Orleans.Serialization.ExceptionSerializationOptions>(o => o.SupportedNamespacePrefixes.Add("TauCluster"));
}

/// <summary>
/// A generation stream that was lost and is being requested again: the session, the first position the caller has not
/// received yet (it resumes there), the attempts in a row that brought no new token (1 for the first), and the failure.
/// </summary>
public sealed record StreamResume(string Session, int NextPosition, int Attempt, Exception Failure);

/// <summary>One step of a completion: text to show (may be empty), the token it came with, and at the end the finish reason.</summary>
public sealed record CompletionUpdate(string Text, int? TokenId, string? FinishReason);
