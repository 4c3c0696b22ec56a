using System.Security.Cryptography;
using System.Text;
using Orleans.Dashboard;
using Microsoft.Extensions.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// The silo process: an Orleans silo and, on the same host, ASP.NET Core serving the OpenAI-compatible API, the web
/// console at / (and its /api), /metrics (Prometheus), /healthz and /readyz, and the Orleans dashboard at /dashboard.
/// </summary>
public static class TauSilo
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder);
        var (tau, http) = ReadOptions(builder.Configuration);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
            builder.WebHost.UseUrls("http://127.0.0.1:8080");
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = http.MaxRequestBodyBytes);

        // First among hosted services, so that on SIGTERM it drains before Kestrel or the silo begin to stop.
        builder.Services.AddHostedService<DrainOnShutdown>();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = tau.ShutdownTimeout + TimeSpan.FromSeconds(30));   // the drain, then leaving the cluster
        builder.UseOrleans(silo => silo
            .UseTauClustering(tau)
            .AddTauServices(tau)
            .AddDashboard());
        // Orleans binds its messaging and endpoint options from the Orleans section, but not membership: how soon a silo
        // that stops answering is declared dead, and how often a silo rereads the table (and so finds itself declared
        // dead after a partition). Deployments on slow or fast networks, and tests, tune them here.
        builder.Services.Configure<Orleans.Configuration.ClusterMembershipOptions>(builder.Configuration.GetSection("Orleans:Membership"));
        builder.Services.AddSingleton(http);
        builder.Services.AddSingleton<GenerationGate>();
        builder.Services.AddSingleton<IGenerationAdmission>(services => services.GetRequiredService<GenerationGate>());
        builder.Services.AddTauHealthChecks();
        builder.Services.AddOpenApi(openApi =>
        {
            openApi.ShouldInclude = endpoint => endpoint.RelativePath?.StartsWith("v1/", StringComparison.Ordinal) == true;   // the API, not the dashboard's internals
            openApi.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "TauCluster";
                document.Info.Description = "OpenAI-compatible completions and chat over a cluster of Tauformer sessions, with TauCluster's extensions (session, domain, top_k).";
                return Task.CompletedTask;
            });
        });
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("taucluster-silo", serviceInstanceId: $"{Environment.MachineName}:{tau.SiloPort}"))
            .WithMetrics(metrics => metrics
                .AddMeter("Microsoft.Orleans")
                .AddMeter("System.Runtime")
                .AddMeter("Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")   // http.server.request.duration, connections
                .AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = http.MetricsCacheMilliseconds));
        // Traces, and everything to an OpenTelemetry collector, when one is configured (the standard OTEL_* settings).
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
            telemetry
                .WithTracing(tracing => tracing
                    .AddAspNetCoreInstrumentation()
                    .AddSource(Orleans.Diagnostics.ActivitySources.ApplicationGrainActivitySourceName, Orleans.Diagnostics.ActivitySources.RuntimeActivitySourceName))
                .UseOtlpExporter();
        // TauCluster's meter only as this silo's IMeterFactory made it (MeterScope.Local): AddMeter would take every meter
        // of that name in the process, and with several silos in one process each /metrics would mix them.
        builder.Services.AddMetrics(metrics => metrics.EnableMetrics(TauMetrics.MeterName, scopes: MeterScope.Local));

        var app = builder.Build();
        var gate = app.Services.GetRequiredService<GenerationGate>();
        app.Services.GetRequiredService<TauMetrics>().Meter.CreateObservableGauge(
            "tau.queue_depth", () => gate.Waiting, "{request}", "Generation requests waiting for a slot on this silo");

        app.Use(RequestTelemetry.Middleware(app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TauCluster.Requests"),
            app.Services.GetRequiredService<TauMetrics>()));
        app.UseConsolePage();
        app.Use(RequireApiKey(http.ApiKeys));
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/v1") || context.Request.Path.StartsWithSegments("/api")) await OpenAiApi.WriteErrors(context, () => next(context));
            else await next(context);
        });
        app.MapTauHealthChecks();
        app.MapOrleansDashboard(routePrefix: "/dashboard");
        app.MapPrometheusScrapingEndpoint("/metrics");
        // Diagnostics, off unless configured: a full, compacting collection, to compare memory before and after a load.
        if (http.EnableAdmin) app.MapPost("/admin/gc", () =>
        {
            long before = GC.GetTotalMemory(forceFullCollection: false);
            System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            return Results.Ok(new { heap_bytes_before = before, heap_bytes = GC.GetTotalMemory(forceFullCollection: false), working_set_bytes = Environment.WorkingSet });
        });
        app.MapOpenAiApi();
        app.MapConsoleApi();
        app.MapOpenApi();   // /openapi/v1.json
        return app;
    }

    /// <summary>
    /// The <c>Tau</c> section, checked before anything is built: a key that binds to nothing (a typo), a value out of
    /// range, a missing model or manifold root, unreadable certificates, and an API guarded by keys on a cluster that is not.
    /// All failures at once, in one <see cref="OptionsValidationException"/>.
    /// </summary>
    public static (TauClusterOptions Tau, HttpApiOptions Http) ReadOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection(TauClusterOptions.Section);
        var failures = ConfigurationKeys.Unknown(section, typeof(TauClusterOptions), new Dictionary<string, Type> { ["Http"] = typeof(HttpApiOptions) }).ToList();
        var tau = ConfigurationKeys.Bind<TauClusterOptions>(section, failures);
        var http = ConfigurationKeys.Bind<HttpApiOptions>(configuration.GetSection(HttpApiOptions.Section), failures);
        failures.AddRange(new TauClusterOptionsValidator().Validate(null, tau).Failures ?? []);
        failures.AddRange(new HttpApiOptionsValidator().Validate(null, http).Failures ?? []);
        if (http.ApiKeys.Length > 0 && tau.ListensBeyondLoopback && !tau.Tls.Enabled && !tau.AllowInsecureCluster)
            failures.Add("Tau:Http:ApiKeys guard the HTTP API, but this silo's silo and gateway ports listen beyond loopback without TLS, "
                + "so anyone on the network could call its grains: configure Tau:Tls (CertificateFile, KeyFile, CaFile), "
                + "or set Tau:AllowInsecureCluster=true to accept that");
        if (failures.Count > 0) throw new OptionsValidationException(TauClusterOptions.Section, typeof(TauClusterOptions), failures);
        return (tau, http);
    }

    /// <summary>
    /// With keys configured, everything but the probes /healthz and /readyz and the console's page (which asks for the
    /// key: the dashboard, /metrics and the console's /api included) needs a valid bearer key.
    /// </summary>
    private static Func<HttpContext, Func<Task>, Task> RequireApiKey(string[] keys)
    {
        var accepted = keys.Where(k => k.Length > 0).Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k))).ToArray();
        return async (context, next) =>
        {
            if (accepted.Length == 0 || context.Request.Path.StartsWithSegments("/healthz") || context.Request.Path.StartsWithSegments("/readyz"))
            {
                await next();
                return;
            }
            string header = context.Request.Headers.Authorization.ToString();
            bool valid = header.StartsWith("Bearer ", StringComparison.Ordinal)
                && SHA256.HashData(Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim())) is var hash
                && accepted.Any(a => CryptographicOperations.FixedTimeEquals(a, hash));
            if (valid)
            {
                await next();
                return;
            }
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            await context.Response.WriteAsJsonAsync(new ApiError(401, "a valid API key is required (Authorization: Bearer KEY)", code: "invalid_api_key").ToJson());
        };
    }
}
