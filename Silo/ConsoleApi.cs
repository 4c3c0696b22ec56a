using Microsoft.Extensions.FileProviders;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// The web console: its page at / (static files built into this assembly, no build step, nothing from a CDN) and the
/// two JSON endpoints it polls, /api/cluster (every silo's view of itself) and /api/domains. The page and its
/// assets are the login, so they are served without a key; the endpoints, like the API, need one when keys are set.
/// </summary>
public static class ConsoleApi
{
    public const string AssetsPath = "/console";

    private static readonly EmbeddedFileProvider Assets = new(typeof(ConsoleApi).Assembly, "TauCluster.Silo.Console");

    /// <summary>Serves the page and its assets; before the key check, which lets them through.</summary>
    public static void UseConsolePage(this WebApplication app)
    {
        app.Use((context, next) =>
        {
            if (context.Request.Path == "/" && HttpMethods.IsGet(context.Request.Method)) context.Request.Path = AssetsPath + "/index.html";
            return next(context);
        });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = Assets,
            RequestPath = AssetsPath,
            // A new build's page must reach browsers that have the old one open: ask them to check each time.
            OnPrepareResponse = file => file.Context.Response.Headers.CacheControl = "no-cache",
        });
    }

    public static void MapConsoleApi(this WebApplication app)
    {
        var api = app.MapGroup("/api").ExcludeFromDescription();
        api.MapGet("/cluster", async (IGrainFactory grains) =>
        {
            var silos = await ClusterView.Silos(grains);
            return Results.Json(new
            {
                silos,
                totals = new
                {
                    silos = silos.Length,
                    sessions = silos.Sum(s => s.Sessions.Length),
                    tokens_per_second = silos.Sum(s => s.TokensPerSecond),
                    cache_bytes = silos.Sum(s => s.CacheBytes),
                    baseline_cache_bytes = silos.Sum(s => s.BaselineCacheBytes),
                    shards = silos.Sum(s => s.Shards.Length),
                    shard_bytes = silos.Sum(s => s.Shards.Sum(shard => shard.Bytes)),
                },
            }, OpenAiApi.JsonOptions);
        });
        api.MapGet("/domains", async (IGrainFactory grains, ManifoldCatalog catalog) =>
            Results.Json(new { data = await ClusterView.Domains(grains, catalog, await ClusterView.Silos(grains)) }, OpenAiApi.JsonOptions));
        app.Map("/api/{**rest}", (string rest) => Results.Json(
            new ApiError(404, $"no endpoint /api/{rest}: see /api/cluster and /api/domains", code: "not_found").ToJson(), statusCode: 404)).ExcludeFromDescription();
    }
}
