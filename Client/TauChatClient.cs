using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an Orleans client (or a silo's own grain factory), so a .NET
/// application can use TauCluster like any chat model. <see cref="ChatOptions.ConversationId"/> names the session: a
/// follow-up call on it prefills only its new turn. Without one, each call runs in a session of its own, removed after.
/// Messages go as chat turns, which the session renders with the shared <see cref="ChatTemplate"/>; replies stop at the next user turn.
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
            options?.Seed is { } seed ? unchecked((ulong)seed) : 0,
            options?.PresencePenalty ?? 0, options?.FrequencyPenalty ?? 0,
            Additional(options, "repetition_penalty"), Additional(options, "min_p") ?? 0);
        var turns = messages.Select(m => new ChatTurn(m.Role.Value, m.Text));
        if (options?.Instructions is { Length: > 0 } instructions) turns = turns.Prepend(new ChatTurn("system", instructions));
        var request = new CompletionRequest(new SessionSpec(modelId, domain, sampling), PromptInput.FromTurns([.. turns]),
            options?.MaxOutputTokens ?? 256, PromptPlacement.Whole, options?.StopSequences?.ToArray());
        string responseId = $"chatcmpl-{Guid.NewGuid():N}";
        try
        {
            PromptUsage? prompt = null;
            int generated = 0;
            await foreach (var chunk in sessions.Complete(sessionId, request, cancellationToken))
            {
                prompt ??= chunk.Prompt;
                generated++;
                var update = new ChatResponseUpdate(ChatRole.Assistant, chunk.Text ?? "")
                {
                    ResponseId = responseId,
                    MessageId = responseId,
                    ConversationId = options?.ConversationId,
                    ModelId = modelId,
                };
                if (chunk.Finish is { } finish)
                {
                    update.FinishReason = finish == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length;
                    update.Contents.Add(new UsageContent(new UsageDetails
                    {
                        InputTokenCount = prompt?.Tokens,
                        OutputTokenCount = generated,
                        TotalTokenCount = prompt?.Tokens + generated,
                        CachedInputTokenCount = prompt?.CachedTokens,
                    }));
                }
                yield return update;
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

    /// <summary>A sampling option Microsoft.Extensions.AI has no property for, from ChatOptions.AdditionalProperties.</summary>
    private static double? Additional(ChatOptions? options, string name) =>
        options?.AdditionalProperties?.TryGetValue(name, out var value) == true && value is not null
            ? Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture) : null;
}
