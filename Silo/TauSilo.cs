using System.Security.Cryptography;
using System.Text;
using Orleans.Dashboard;
using Microsoft.Extensions.Diagnostics.Metrics;
using OpenTelemetry.Metrics;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// The silo process: an Orleans silo and, on the same host, ASP.NET Core serving the OpenAI-compatible API,
/// /metrics (Prometheus), /healthz and the Orleans dashboard at /dashboard.
/// </summary>
public static class TauSilo
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder);
        var tau = builder.Configuration.GetSection(TauClusterOptions.Section).Get<TauClusterOptions>() ?? new TauClusterOptions();
        var http = builder.Configuration.GetSection(HttpApiOptions.Section).Get<HttpApiOptions>() ?? new HttpApiOptions();
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
            builder.WebHost.UseUrls("http://127.0.0.1:8080");
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = http.MaxRequestBodyBytes);

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
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter("Microsoft.Orleans")
            .AddMeter("System.Runtime")
            .AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = http.MetricsCacheMilliseconds));
        // TauCluster's meter only as this silo's IMeterFactory made it (MeterScope.Local): AddMeter would take every meter
        // of that name in the process, and with several silos in one process each /metrics would mix them.
        builder.Services.AddMetrics(metrics => metrics.EnableMetrics(TauMetrics.MeterName, scopes: MeterScope.Local));

        var app = builder.Build();
        var gate = app.Services.GetRequiredService<GenerationGate>();
        app.Services.GetRequiredService<TauMetrics>().Meter.CreateObservableGauge(
            "tau.queue_depth", () => gate.Waiting, "{request}", "Generation requests waiting for a slot on this silo");

        app.Use(RequireApiKey(http.ApiKeys));
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/v1")) await OpenAiApi.WriteErrors(context, () => next(context));
            else await next(context);
        });
        app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
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
        return app;
    }

    /// <summary>With keys configured, everything but /healthz (the dashboard and /metrics included) needs a valid bearer key.</summary>
    private static Func<HttpContext, Func<Task>, Task> RequireApiKey(string[] keys)
    {
        var accepted = keys.Where(k => k.Length > 0).Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k))).ToArray();
        return async (context, next) =>
        {
            if (accepted.Length == 0 || context.Request.Path.StartsWithSegments("/healthz"))
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
