using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;

namespace TauCluster.Http.Tests;

/// <summary>A silo guarded by an API key, for the console's page and endpoints.</summary>
public sealed class GuardedServerFixture : IAsyncLifetime
{
    public const string Key = "console-test-key";
    public SiloServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await SiloServer.Start(("Tau:Http:ApiKeys:0", Key));
    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>The web console's page, its /api and the session fork it offers, on a real Kestrel with an API key configured.</summary>
public sealed class ConsoleApiTests(GuardedServerFixture fixture) : IClassFixture<GuardedServerFixture>
{
    private SiloServer Server => fixture.Server;

    private ChatClient Chat() => new OpenAIClient(new ApiKeyCredential(GuardedServerFixture.Key),
        new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") }).GetChatClient(SiloServer.Model);

    private async Task<string> Converse(string session, string text)
    {
        var options = new ChatCompletionOptions { Temperature = 0.8f, Seed = 11, MaxOutputTokenCount = 10 };
        options.Patch.Set("$.session"u8, session);
        var reply = await Chat().CompleteChatAsync([new UserChatMessage(text)], options);
        return reply.Value.Content[0].Text;
    }

    [Fact]
    public async Task The_page_and_its_assets_need_no_key_and_everything_else_does()
    {
        using var anonymous = Server.Http();
        var page = await anonymous.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<title>TauCluster</title>", await page.Content.ReadAsStringAsync());
        foreach (var asset in new[] { "/console/console.js", "/console/console.css" })
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync(asset)).StatusCode);

        foreach (var guarded in new[] { "/api/cluster", "/api/domains", "/console/no-such-file.js", "/v1/models", "/dashboard" })
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(guarded)).StatusCode);
        using var keyed = Server.Http(GuardedServerFixture.Key);
        Assert.Equal(HttpStatusCode.OK, (await keyed.GetAsync("/api/cluster")).StatusCode);
        var missing = await keyed.GetAsync("/api/no-such-view");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("not_found", (await missing.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_cluster_view_shows_a_conversations_session_with_the_cache_bytes_the_session_reports()
    {
        var session = $"console-{Guid.NewGuid():N}";
        await Converse(session, "hello there");
        using var http = Server.Http(GuardedServerFixture.Key);
        var info = (await http.GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        var cluster = (await http.GetFromJsonAsync<JsonObject>("/api/cluster"))!;

        var silo = Assert.Single(cluster["silos"]!.AsArray())!;
        Assert.Equal(info["silo"]!.GetValue<string>(), silo["silo"]!.GetValue<string>());
        var view = Assert.Single(silo["sessions"]!.AsArray(), s => s!["session"]!.GetValue<string>() == session)!;
        Assert.Equal(info["cache_bytes"]!.GetValue<long>(), view["cache_bytes"]!.GetValue<long>());
        Assert.Equal(info["baseline_cache_bytes"]!.GetValue<long>(), view["baseline_cache_bytes"]!.GetValue<long>());
        Assert.Equal(10, view["generated_tokens"]!.GetValue<long>());
        Assert.NotNull(silo["admission"]);
        Assert.True(cluster["totals"]!["sessions"]!.GetValue<int>() >= 1);
    }

    [Fact]
    public async Task A_fork_continues_the_conversation_in_a_copy_and_bad_forks_are_refused_by_status()
    {
        var parent = $"console-{Guid.NewGuid():N}";
        var child = parent + "-fork";
        await Converse(parent, "once upon a time");
        using var http = Server.Http(GuardedServerFixture.Key);
        var forked = await http.PostAsJsonAsync($"/v1/sessions/{parent}/fork", new { id = child });
        Assert.Equal(HttpStatusCode.OK, forked.StatusCode);
        var info = (await forked.Content.ReadFromJsonAsync<JsonObject>())!;
        var parentInfo = (await http.GetFromJsonAsync<JsonObject>($"/v1/sessions/{parent}"))!;
        Assert.Equal((child, parentInfo["length"]!.GetValue<int>()), (info["session"]!.GetValue<string>(), info["length"]!.GetValue<int>()));

        // the same next turn in the copy and in the original: the same reply, since the copy keeps the generator too
        Assert.Equal(await Converse(parent, "and then"), await Converse(child, "and then"));

        Assert.Equal(HttpStatusCode.Conflict, (await http.PostAsJsonAsync($"/v1/sessions/{parent}/fork", new { id = child })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsJsonAsync("/v1/sessions/no-such-session/fork", new { id = "x-" + child })).StatusCode);
        var noId = await http.PostAsJsonAsync($"/v1/sessions/{parent}/fork", new { });
        Assert.Equal(HttpStatusCode.BadRequest, noId.StatusCode);
        Assert.Equal("id", (await noId.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["param"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsJsonAsync($"/v1/sessions/{parent}/fork", new { id = "../escape" })).StatusCode);
    }
}
