using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an Orleans client (or a silo's own grain factory), so a .NET
/// application can use TauCluster like any chat model. <see cref="ChatOptions.ConversationId"/> names the session: a
/// follow-up call on it prefills only its new turn. Without one, each call runs in a session of its own, removed after.
/// Messages go through the shared <see cref="ChatTemplate"/>; replies stop at the next user turn.
/// </summary>
public sealed class TauChatClient(IGrainFactory grains, string model = ModelStore.DefaultName, string? domain = null) : IChatClient
{
    private readonly TauSessionClient sessions = new(grains);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string modelId = options?.ModelId ?? model;
        string sessionId = options?.ConversationId ?? $"chat-{Guid.NewGuid():N}";
        var sampling = new SamplingSettings(options?.Temperature ?? 1.0, options?.TopK ?? 0, options?.TopP ?? 1.0,
            options?.Seed is { } seed ? unchecked((ulong)seed) : 0);
        var turns = messages.Select(m => new ChatTurn(m.Role.Value, m.Text));
        if (options?.Instructions is { Length: > 0 } instructions) turns = turns.Prepend(new ChatTurn("system", instructions));
        string[] stops = [ChatTemplate.TurnStop, .. options?.StopSequences ?? []];
        string responseId = $"chatcmpl-{Guid.NewGuid():N}";
        try
        {
            await sessions.Open(sessionId, new SessionSpec(modelId, domain, sampling), cancellationToken);
            var prompt = await sessions.ContinueWith(sessionId, PromptInput.FromText(ChatTemplate.Render(turns)), cancellationToken);
            int generated = 0;
            await foreach (var update in sessions.Complete(sessionId, options?.MaxOutputTokens ?? 256, stops, cancellationToken, from: prompt.Length))
            {
                if (update.TokenId is not null) generated++;
                var chunk = new ChatResponseUpdate(ChatRole.Assistant, update.Text)
                {
                    ResponseId = responseId,
                    MessageId = responseId,
                    ConversationId = options?.ConversationId,
                    ModelId = modelId,
                };
                if (update.FinishReason is { } finish)
                {
                    chunk.FinishReason = finish == "stop" ? ChatFinishReason.Stop : ChatFinishReason.Length;
                    chunk.Contents.Add(new UsageContent(new UsageDetails
                    {
                        InputTokenCount = prompt.Length,
                        OutputTokenCount = generated,
                        TotalTokenCount = prompt.Length + generated,
                        CachedInputTokenCount = prompt.ReusedTokens,
                    }));
                }
                yield return chunk;
            }
        }
        finally
        {
            if (options?.ConversationId is null) await sessions.Session(sessionId).Delete();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("taucluster", null, model)
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose()
    {
    }
}
