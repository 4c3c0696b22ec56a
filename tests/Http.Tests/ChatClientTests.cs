using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using TauCluster.Client;
using TauCluster.Grains;

namespace TauCluster.Http.Tests;

/// <summary><see cref="TauChatClient"/> through Microsoft.Extensions.AI, over a real Orleans client of a running silo.</summary>
[Collection(nameof(ServerCollection))]
public sealed class ChatClientTests(ServerFixture fixture)
{
    private async Task<(IHost Host, IChatClient Chat)> Connect(string model)
    {
        var clusterId = fixture.Server.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ClusterOptions>>().Value;
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, fixture.Server.GatewayPort));
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (clusterId.ClusterId, clusterId.ServiceId));
            client.AddTauClient();
        });
        builder.Services.AddChatClient(sp => new TauChatClient(sp.GetRequiredService<IClusterClient>(), model));
        var host = builder.Build();
        await host.StartAsync();
        return (host, host.Services.GetRequiredService<IChatClient>());
    }

    [Fact]
    public async Task Chat_client_answers_streams_the_same_and_keeps_a_conversation()
    {
        var (host, chat) = await Connect(SiloServer.Gpt2Model);
        try
        {
            var options = new ChatOptions { Temperature = 0.7f, Seed = 9, MaxOutputTokens = 10 };
            var response = await chat.GetResponseAsync("Tell me about tau", options);
            Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
            Assert.Equal(10, response.Usage!.OutputTokenCount);
            Assert.Equal(ChatFinishReason.Length, response.FinishReason);

            var streamed = await chat.GetStreamingResponseAsync("Tell me about tau", options).ToChatResponseAsync();
            Assert.Equal(response.Text, streamed.Text);   // same seed, same request

            string conversation = $"mea-{Guid.NewGuid():N}";
            var withSession = new ChatOptions { Temperature = 0.7f, Seed = 9, MaxOutputTokens = 6, ConversationId = conversation };
            List<ChatMessage> history = [new(ChatRole.User, "first")];
            var first = await chat.GetResponseAsync(history, withSession);
            history.AddRange(first.Messages);
            history.Add(new(ChatRole.User, "second"));
            var second = await chat.GetResponseAsync(history, withSession);
            Assert.Equal(first.Usage!.InputTokenCount + first.Usage.OutputTokenCount, second.Usage!.CachedInputTokenCount);
            Assert.Equal(conversation, second.ConversationId);
            Assert.Equal("taucluster", chat.GetService<ChatClientMetadata>()!.ProviderName);
        }
        finally
        {
            await host.StopAsync();
            host.Dispose();
        }
    }
}
