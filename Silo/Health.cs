using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Storage;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// Liveness (/healthz: the process answers) and readiness (/readyz: this silo should be sent work): active in the
/// cluster's membership, its default model loadable, its grain storage reachable, and not draining.
/// </summary>
public static class Health
{
    public const string Ready = "ready";
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(5);

    public static IServiceCollection AddTauHealthChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<AdmittingCheck>("admitting", tags: [Ready])
            .AddCheck<MembershipCheck>("membership", tags: [Ready], timeout: CheckTimeout)
            .AddCheck<DefaultModelCheck>("default_model", tags: [Ready], timeout: CheckTimeout)
            .AddCheck<StorageCheck>("storage", tags: [Ready], timeout: CheckTimeout);
        return services;
    }

    public static void MapTauHealthChecks(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new() { Predicate = _ => false, ResponseWriter = Write });
        app.MapHealthChecks("/readyz", new() { Predicate = check => check.Tags.Contains(Ready), ResponseWriter = Write });
    }

    /// <summary>{"status": "ok" | "degraded" | "unavailable", "checks": {name: {"status", "description"}}}.</summary>
    private static Task Write(HttpContext http, HealthReport report)
    {
        var body = new JsonObject { ["status"] = Name(report.Status) };
        if (report.Entries.Count > 0)
            body["checks"] = new JsonObject(report.Entries.Select(e => KeyValuePair.Create(e.Key, (JsonNode?)new JsonObject
            {
                ["status"] = Name(e.Value.Status),
                ["description"] = e.Value.Description ?? e.Value.Exception?.Message,
            })));
        return http.Response.WriteAsJsonAsync(body);
    }

    private static string Name(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => "ok",
        HealthStatus.Degraded => "degraded",
        _ => "unavailable",
    };

    private sealed class AdmittingCheck(GenerationGate gate, LocalSessions sessions) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken) =>
            Task.FromResult(gate.Admitting
                ? HealthCheckResult.Healthy("admitting generations")
                : HealthCheckResult.Unhealthy($"draining: {gate.Running} API generations and {sessions.Generating} session completions still running"));
    }

    private sealed class MembershipCheck(IClusterMembershipService membership, ILocalSiloDetails silo) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            var status = membership.CurrentSnapshot.GetSiloStatus(silo.SiloAddress);
            return Task.FromResult(status == SiloStatus.Active
                ? HealthCheckResult.Healthy($"silo {silo.SiloAddress} is active")
                : HealthCheckResult.Unhealthy($"silo {silo.SiloAddress} is {status} in the cluster's membership"));
        }
    }

    /// <summary>The model a request without one gets: loaded once (the store keeps it), so later checks cost nothing.</summary>
    private sealed class DefaultModelCheck(ModelStore models) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            try
            {
                var model = await Task.Run(() => models.Get(ModelStore.DefaultName), cancellationToken);
                return HealthCheckResult.Healthy($"the default model is loaded ({model.Config.NLayer} layers, context {model.Config.SequenceLen})");
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                return HealthCheckResult.Unhealthy($"the default model does not load: {e.Message}");
            }
        }
    }

    /// <summary>
    /// A read of a session that does not exist, through the silo's own grain storage provider, as sessions read theirs:
    /// whatever the provider is (memory, files, Redis), it answers.
    /// </summary>
    private sealed class StorageCheck(IServiceProvider services, ILocalSiloDetails silo, IOptions<TauClusterOptions> options) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            var storage = services.GetRequiredKeyedService<IGrainStorage>(TauStorage.Name);
            var probe = new GrainState<SessionState>(new SessionState());   // a type the provider stores already
            var started = Stopwatch.GetTimestamp();
            try
            {
                await storage.ReadStateAsync("health", GrainId.Create("tau-health", silo.SiloAddress.ToParsableString()), probe).WaitAsync(cancellationToken);
                return HealthCheckResult.Healthy($"{options.Value.Storage} storage answered in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                return HealthCheckResult.Unhealthy($"{options.Value.Storage} storage is not reachable: {e.Message}");
            }
        }
    }
}

/// <summary>
/// On SIGTERM, before the silo leaves the cluster: stop admitting generations (readiness fails, new ones get 503 with
/// Retry-After), then wait for the running ones, API requests and session completions alike, up to
/// <see cref="TauClusterOptions.ShutdownTimeout"/>. Hosted lifecycle services are told to stop before any hosted service
/// stops, so Kestrel still answers and Orleans still serves while this waits.
/// </summary>
public sealed partial class DrainOnShutdown(GenerationGate gate, LocalSessions sessions, IOptions<TauClusterOptions> options, ILogger<DrainOnShutdown> logger)
    : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        gate.StopAdmitting();
        var timeout = options.Value.ShutdownTimeout;
        Draining(logger, gate.Running, sessions.Generating, timeout.TotalSeconds);
        var started = Stopwatch.GetTimestamp();
        try
        {
            // Polled: session completions are counted, not announced, and a shutdown can spare a tenth of a second.
            while (gate.Running > 0 || sessions.Generating > 0)
            {
                if (Stopwatch.GetElapsedTime(started) >= timeout)
                {
                    DrainTimedOut(logger, timeout.TotalSeconds, gate.Running, sessions.Generating);
                    return;
                }
                await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            }
            Drained(logger, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        catch (OperationCanceledException)
        {
            // The host's own shutdown timeout ran out first: leave now.
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Draining: admitting no new generations; waiting up to {TimeoutSeconds} s for {ApiGenerations} API generations and {SessionCompletions} session completions")]
    private static partial void Draining(ILogger logger, int apiGenerations, int sessionCompletions, double timeoutSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Drained in {Seconds:F1} s; leaving the cluster")]
    private static partial void Drained(ILogger logger, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Drain timed out after {TimeoutSeconds} s with {ApiGenerations} API generations and {SessionCompletions} session completions running; leaving the cluster (their sessions continue elsewhere from their last checkpoint)")]
    private static partial void DrainTimedOut(ILogger logger, double timeoutSeconds, int apiGenerations, int sessionCompletions);

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
