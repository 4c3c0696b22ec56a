using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using TauCluster.Engine;
using TauCluster.Silo;

namespace TauCluster.Http.Tests;

/// <summary>
/// A real silo with its real Kestrel on 127.0.0.1 (a free port), built exactly as the Silo program builds it, serving
/// a small byte-tokenizer model. Each instance is its own one-silo cluster.
/// </summary>
public sealed class SiloServer : IAsyncDisposable
{
    public const string Model = "tiny";
    public const string Gpt2Model = "tiny-gpt2";   // the GPT-2 tokenizer: replies that are text, for conversations
    private readonly string root;

    private SiloServer(WebApplication app, Uri address, int gatewayPort, string root)
    {
        this.root = root;
        App = app;
        Address = address;
        GatewayPort = gatewayPort;
    }

    public WebApplication App { get; }
    public Uri Address { get; }

    /// <summary>Where this silo's models are (Tau:ModelsRoot).</summary>
    public string ModelsRoot => Path.Combine(root, "models");
    public int GatewayPort { get; }
    public IGrainFactory Grains => App.Services.GetRequiredService<IGrainFactory>();
    public GenerationGate Gate => App.Services.GetRequiredService<GenerationGate>();

    /// <summary>Waits for a state of the silo's admission gate (it announces every change), failing after a minute.</summary>
    public Task GateReaches(Func<GenerationGate, bool> condition) => Gate.When(condition).WaitAsync(TimeSpan.FromMinutes(1));

    public static Task<SiloServer> Start(params (string Key, string Value)[] settings) => StartWith(null, settings);

    /// <summary>A silo whose host <paramref name="configure"/> may change further (a logger provider, more services).</summary>
    public static async Task<SiloServer> StartWith(Action<WebApplicationBuilder>? configure, params (string Key, string Value)[] settings)
    {
        var root = Path.Combine(Path.GetTempPath(), "tau-http-tests", Guid.NewGuid().ToString("N"));
        var config = new ModelConfig(VocabSize: 256, NLayer: 2, NHead: 2, NKvHead: 1, NEmbd: 64, SequenceLen: 2048, Softcap: 15,
            Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.05), Tokenizer: "bytes");
        TauModel.CreateRandom(config, 5).Save(Path.Combine(root, "models", Model));
        TauModel.CreateRandom(config with { VocabSize = 50257, Tokenizer = "gpt2" }, 6).Save(Path.Combine(root, "models", Gpt2Model));
        int gatewayPort = TestPaths.FreePort();
        var values = new Dictionary<string, string?>
        {
            ["Tau:ModelsRoot"] = Path.Combine(root, "models"),
            ["Tau:DataDirectory"] = Path.Combine(root, "data"),
            ["Tau:SiloPort"] = TestPaths.FreePort().ToString(),
            ["Tau:GatewayPort"] = gatewayPort.ToString(),
            ["Tau:ClusterId"] = $"http-{Guid.NewGuid():N}",
            ["urls"] = "http://127.0.0.1:0",
            ["Tau:Http:MetricsCacheMilliseconds"] = "0",   // every scrape is fresh: tests assert exact values without waiting
        };
        foreach (var (k, v) in settings) values[k] = v;
        var app = TauSilo.Build([], builder =>
        {
            builder.Configuration.AddInMemoryCollection(values);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            configure?.Invoke(builder);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SiloServer(app, new Uri(address), gatewayPort, root);
    }

    public HttpClient Http(string? apiKey = null)
    {
        var http = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromMinutes(2) };
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", apiKey);
        return http;
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }
}
