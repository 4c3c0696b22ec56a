using System.Diagnostics;
using System.Text.RegularExpressions;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// What one API generation did, filled in as it runs (by <see cref="OpenAiApi"/>) and reported once when the request
/// ends: in its log line and in the request metrics.
/// </summary>
public sealed class GenerationRecord
{
    /// <summary>completions or chat; null for requests that are not generations.</summary>
    public string? Endpoint { get; set; }

    /// <summary>Set once the model is known to exist: a metric label must not take whatever a request names.</summary>
    public string? Model { get; set; }
    public string? Session { get; set; }
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
    public TimeSpan? TimeToFirstToken { get; set; }

    /// <summary>stop or length as OpenAI reports them; error and cancelled for replies that did not finish.</summary>
    public string? FinishReason { get; set; }
}

/// <summary>
/// Per request: an <c>x-request-id</c> (the caller's if it is a plain token, else a new one) on the response and in
/// every log line's scope, one structured log line when the request ends, and, for generations, the request metrics.
/// </summary>
public static partial class RequestTelemetry
{
    public const string Header = "x-request-id";

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,128}$")]
    private static partial Regex PlainId();

    public static Func<HttpContext, Func<Task>, Task> Middleware(ILogger logger, TauMetrics metrics) => async (context, next) =>
    {
        string incoming = context.Request.Headers[Header].ToString();
        string id = PlainId().IsMatch(incoming) ? incoming : Guid.NewGuid().ToString("N");
        context.TraceIdentifier = id;
        context.Response.Headers[Header] = id;
        var record = new GenerationRecord();
        context.Features.Set(record);
        long started = Stopwatch.GetTimestamp();
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["RequestId"] = id });
        try
        {
            await next();
        }
        finally
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            bool aborted = context.RequestAborted.IsCancellationRequested;
            int status = aborted && !context.Response.HasStarted ? 499 : context.Response.StatusCode;   // 499: nginx's "client closed request"
            if (record.FinishReason is null && record.Endpoint is not null)
                record.FinishReason = aborted ? "cancelled" : "error";
            var path = context.Request.Path.Value ?? "";
            bool probe = path is "/healthz" or "/readyz" or "/metrics";   // scraped every few seconds: not worth a line each
            if (logger.IsEnabled(probe ? LogLevel.Debug : LogLevel.Information))
                Request(logger, probe ? LogLevel.Debug : LogLevel.Information, context.Request.Method, path, status, elapsed.TotalMilliseconds, id,
                    record.Model, record.Session, record.PromptTokens, record.CompletionTokens, record.TimeToFirstToken?.TotalMilliseconds, record.FinishReason);
            if (record.Endpoint is not null)
            {
                var endpoint = new KeyValuePair<string, object?>("endpoint", record.Endpoint);
                var model = new KeyValuePair<string, object?>("model", record.Model ?? "-");
                var finish = new KeyValuePair<string, object?>("finish_reason", record.FinishReason);
                metrics.Requests.Add(1, endpoint, model, finish, new("status", status));
                metrics.RequestDuration.Record(elapsed.TotalSeconds, endpoint, model, finish);
                if (record.PromptTokens > 0) metrics.PromptTokens.Add(record.PromptTokens, model);
            }
        }
    };

    [LoggerMessage(EventId = 1, Message = "{Method} {Path} {Status} in {DurationMs:F1} ms request_id={RequestId} model={Model} session={Session} "
        + "prompt_tokens={PromptTokens} completion_tokens={CompletionTokens} ttft_ms={TimeToFirstTokenMs} finish_reason={FinishReason}")]
    private static partial void Request(ILogger logger, LogLevel level, string method, string path, int status, double durationMs, string requestId,
        string? model, string? session, int promptTokens, int completionTokens, double? timeToFirstTokenMs, string? finishReason);
}
