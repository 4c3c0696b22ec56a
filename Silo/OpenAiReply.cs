using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Features;
using TauCluster.Grains;

namespace TauCluster.Silo;

public static partial class OpenAiApi
{
    /// <summary>Writes one completion, whole or as server-sent events, in the shape of the endpoint it answers.</summary>
    private sealed class Reply
    {
        private readonly GenerationRequest request;
        private readonly bool chat;
        private readonly string sessionId;
        private readonly PromptUsage prompt;
        private readonly GenerationRecord record;
        private readonly OpenAiLogprobs logprobs;
        private readonly string? echo;
        private readonly TokenLogprob[] promptLogprobs;
        private readonly string id;
        private readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        /// <param name="echo">The prompt's text, for a completion that begins with it (echo); null otherwise.</param>
        /// <param name="promptLogprobs">The prompt's log-probabilities, when an echo asked for them (every choice shares choice 0's).</param>
        public Reply(GenerationRequest request, bool chat, string sessionId, PromptUsage prompt, GenerationRecord record,
            OpenAiLogprobs logprobs, string? echo, TokenLogprob[]? promptLogprobs)
        {
            (this.request, this.chat, this.sessionId, this.prompt, this.record) = (request, chat, sessionId, prompt, record);
            (this.logprobs, this.echo, this.promptLogprobs) = (logprobs, echo, promptLogprobs ?? []);
            id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            record.PromptTokens = prompt.Tokens;
        }

        private bool WantsLogprobs => request.Logprobs is not null;

        public async Task Whole(HttpContext http, (CompletionChunk First, IAsyncEnumerator<CompletionChunk> Others)[] choices)
        {
            var replies = await Task.WhenAll(choices.Select(async c =>
            {
                var text = new System.Text.StringBuilder(echo);
                var scores = new List<TokenLogprob>(promptLogprobs);
                FinishReason? finish = null;
                int count = 0;
                for (var chunk = c.First; chunk is not null; chunk = await c.Others.MoveNextAsync() ? c.Others.Current : null)
                {
                    text.Append(chunk.Text);
                    if (chunk.Logprob is { } scored) scores.Add(scored);
                    count++;
                    finish = chunk.Finish ?? finish;
                }
                return (Text: text.ToString(), Finish: Name(finish), Count: count, Logprobs: WantsLogprobs ? Logprobs(scores, logprobs.NewOffsets()) : null);
            }));
            record.CompletionTokens = replies.Sum(r => r.Count);
            record.FinishReason = replies[0].Finish;
            var response = Envelope(chat ? "chat.completion" : "text_completion", replies.Select((r, index) => chat
                ? new JsonObject { ["index"] = index, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = r.Text }, ["logprobs"] = r.Logprobs, ["finish_reason"] = r.Finish }
                : new JsonObject { ["index"] = index, ["text"] = r.Text, ["logprobs"] = r.Logprobs, ["finish_reason"] = r.Finish }).ToArray());
            response["usage"] = Usage();
            await http.Response.WriteAsJsonAsync(response);
        }

        /// <summary>
        /// Server-sent events: the choices' chunks as they come, each with its choice's index (one writer: the choices
        /// run at once and hand their chunks to it through a channel).
        /// </summary>
        public async Task Stream(HttpContext http, (CompletionChunk First, IAsyncEnumerator<CompletionChunk> Others)[] choices, CancellationTokenSource choicesEnd)
        {
            http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            http.Response.ContentType = "text/event-stream";
            http.Response.Headers.CacheControl = "no-cache";
            // Each choice's text_offset counts on from what its earlier chunks wrote.
            var offsets = choices.Select(_ => logprobs.NewOffsets()).ToArray();
            for (int index = 0; index < choices.Length; index++)
            {
                if (chat) await Send(http, Chunk(index, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null));
                else if (echo is not null)   // the echoed prompt comes first, as its own chunk
                    await Send(http, Chunk(index, null, null, echo, WantsLogprobs ? Logprobs(promptLogprobs, offsets[index]) : null));
            }
            var merged = System.Threading.Channels.Channel.CreateBounded<(int Index, CompletionChunk Chunk)>(
                new System.Threading.Channels.BoundedChannelOptions(64) { SingleReader = true });
            var producers = Task.WhenAll(choices.Select(async (c, index) =>
            {
                for (var chunk = c.First; chunk is not null; chunk = await c.Others.MoveNextAsync() ? c.Others.Current : null)
                    await merged.Writer.WriteAsync((index, chunk), choicesEnd.Token);
            }));
            _ = producers.ContinueWith(done => merged.Writer.TryComplete(done.Exception?.GetBaseException()), TaskScheduler.Default);
            bool whole = false;
            try
            {
                await foreach (var (index, chunk) in merged.Reader.ReadAllAsync(http.RequestAborted))
                {
                    record.CompletionTokens++;
                    string text = chunk.Text ?? "";
                    if (chunk.Finish is not null && index == 0) record.FinishReason = Name(chunk.Finish);
                    if (text.Length > 0 || chunk.Finish is not null || chunk.Logprob is not null)
                        await Send(http, Chunk(index, chat ? Delta(text) : null, Name(chunk.Finish), text,
                            chunk.Logprob is { } scored ? Logprobs([scored], offsets[index]) : null));
                }
                whole = true;
            }
            catch (Exception e) when (!(e is OperationCanceledException && http.RequestAborted.IsCancellationRequested))
            {
                record.FinishReason = "error";
                await Send(http, ApiError.From(e).ToJson());   // headers are gone: the error travels as an event
            }
            finally
            {
                // Cut short (an error, a client gone): the other choices stop too. Either way none is still reading its
                // stream once this returns, since the streams are disposed next.
                if (!whole) await choicesEnd.CancelAsync();
                await producers.ContinueWith(_ => { }, TaskScheduler.Default);
            }
            if (request.IncludeUsage)
            {
                var usage = Envelope(chat ? "chat.completion.chunk" : "text_completion");
                usage["usage"] = Usage();
                await Send(http, usage);
            }
            await http.Response.WriteAsync("data: [DONE]\n\n", http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }

        /// <summary>OpenAI's finish_reason: a reply the client stopped has none.</summary>
        private static string? Name(FinishReason? finish) => finish switch
        {
            FinishReason.Stop => "stop",
            FinishReason.Length => "length",
            _ => null,
        };

        private static JsonObject Delta(string text) => text.Length > 0 ? new JsonObject { ["content"] = text } : new JsonObject();

        private JsonObject Chunk(int index, JsonObject? delta, string? finish, string text = "", JsonObject? scores = null) => Envelope(
            chat ? "chat.completion.chunk" : "text_completion",
            chat
                ? new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = scores, ["finish_reason"] = finish }
                : new JsonObject { ["index"] = index, ["text"] = text, ["logprobs"] = scores, ["finish_reason"] = finish });

        /// <summary>The logprobs object of these tokens in the endpoint's shape.</summary>
        private JsonObject Logprobs(IEnumerable<TokenLogprob> tokens, OpenAiLogprobs.Offsets offsets) =>
            chat ? logprobs.Chat(tokens) : logprobs.Completion(tokens, offsets);

        private JsonObject Envelope(string kind, params JsonObject[] choices) => new()
        {
            ["id"] = id,
            ["object"] = kind,
            ["created"] = created,
            ["model"] = request.Model,
            ["session"] = request.Session is null ? null : sessionId,
            ["choices"] = new JsonArray(choices),
        };

        private JsonObject Usage() => new()
        {
            ["prompt_tokens"] = prompt.Tokens,
            ["completion_tokens"] = record.CompletionTokens,
            ["total_tokens"] = prompt.Tokens + record.CompletionTokens,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = prompt.CachedTokens },
        };

        private static async Task Send(HttpContext http, JsonObject data)
        {
            await http.Response.WriteAsync($"data: {data.ToJsonString()}\n\n", http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }
    }
}
