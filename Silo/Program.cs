using Orleans.Dashboard;
using TauCluster.Grains;

var builder = WebApplication.CreateBuilder(args);
var tau = builder.Configuration.GetSection(TauClusterOptions.Section).Get<TauClusterOptions>() ?? new TauClusterOptions();
if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
    builder.WebHost.UseUrls("http://127.0.0.1:8080");

builder.UseOrleans(silo => silo
    .UseTauClustering(tau)
    .AddTauServices(tau)
    .AddDashboard());

var app = builder.Build();
app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
app.MapOrleansDashboard(routePrefix: "/dashboard");
app.Run();
