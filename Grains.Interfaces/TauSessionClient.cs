using Microsoft.Extensions.DependencyInjection;
using System.Runtime.CompilerServices;

namespace TauCluster.Grains;

/// <summary>
/// The client side of a conversation: runs completions and session calls, riding out the loss of the silo that hosts
/// the session. A lost completion stream is requested again under its request id; the session resumes from its last
/// checkpoint on another silo and regenerates identically, and positions already received are skipped, so the caller
/// sees every position exactly once and the same tokens as without the failure.
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
    /// Runs one completion (<see cref="ISessionGrain.Complete"/>) and streams its chunks, each position once. A stream
    /// lost to the cluster is requested again under the same request id: the session resumes from its last checkpoint,
    /// on another silo if need be, regenerates identically, and the positions already received are skipped.
    /// </summary>
    public async IAsyncEnumerable<CompletionChunk> Complete(string sessionId, CompletionRequest request,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var session = Session(sessionId);
        request = request with { RequestId = request.RequestId ?? Guid.NewGuid().ToString("N") };
        int next = 0, attempts = 0;
        while (true)
        {
            var stream = session.Complete(request, cancellation).GetAsyncEnumerator(cancellation);
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
                    var chunk = stream.Current;
                    if (chunk.Position < next) continue;   // regenerated after a failover: already delivered
                    next = chunk.Position + 1;
                    attempts = 0;
                    yield return chunk;
                }
            }
            finally
            {
                try { await stream.DisposeAsync(); }
                catch (Exception e) when (IsTransient(e, cancellation)) { }   // the silo holding the stream is gone
            }
            if (lostTo is null) yield break;   // the reply finished (or the session stopped it)
            Resuming?.Invoke(new StreamResume(sessionId, next, attempts, lostTo));
            await Task.Delay(RetryDelay, cancellation);
        }
    }

    /// <summary><see cref="ISessionGrain.Prepare"/>, retried while the cluster is in flux (it is idempotent for a request id).</summary>
    public Task<PromptUsage> Prepare(string sessionId, CompletionRequest request, CancellationToken cancellation = default) =>
        Retry(() => Session(sessionId).Prepare(request), cancellation);

    /// <summary>Generates up to <paramref name="maxTokens"/> tokens from where the session stands.</summary>
    public IAsyncEnumerable<CompletionChunk> Generate(string sessionId, int maxTokens, string[]? stop = null, CancellationToken cancellation = default) =>
        Complete(sessionId, new CompletionRequest(null, null, maxTokens, Stop: stop), cancellation);

    private static async Task<(bool Moved, Exception? Failure)> TryMoveNext(IAsyncEnumerator<CompletionChunk> stream, CancellationToken cancellation)
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
    /// errors, argument errors) are never retried, nor is a cancellation the caller asked for. A write conflict is the
    /// cluster's: two activations of one session wrote it (one on a silo declared dead that did not know it yet), and
    /// the one that lost has deactivated, so a retry finds the session as stored.
    /// </summary>
    public static bool IsTransient(Exception e, CancellationToken cancellation) =>
        !cancellation.IsCancellationRequested && e is SiloUnavailableException or OrleansMessageRejectionException
            or EnumerationAbortedException or TimeoutException or GatewayTooBusyException
            or Orleans.Runtime.Messaging.ConnectionFailedException or OperationCanceledException or Orleans.Storage.InconsistentStateException
            or OrleansException { InnerException: SiloUnavailableException or Orleans.Runtime.Messaging.ConnectionFailedException };
}

public static class TauClientHosting
{
    /// <summary>
    /// Lets TauCluster's typed errors (unknown model, invalid options, …) arrive at this client as themselves, and carries
    /// the caller's trace context into the grain calls (Orleans' activity propagation).
    /// </summary>
    public static IClientBuilder AddTauClient(this IClientBuilder builder)
    {
        builder.Services.AddTauErrors();
        return builder.AddActivityPropagation();
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
