using Microsoft.Extensions.Options;

namespace TauCluster.Silo;

/// <summary>The <c>Tau:Http</c> configuration section: the OpenAI-compatible API's limits and keys.</summary>
public sealed class HttpApiOptions
{
    public const string Section = "Tau:Http";

    /// <summary>When any are set, every endpoint but /healthz (the dashboard and /metrics included) needs <c>Authorization: Bearer KEY</c>.</summary>
    public string[] ApiKeys { get; set; } = [];

    /// <summary>Larger request bodies are refused with 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;

    /// <summary>Generations running at once on this silo; more wait in a bounded queue.</summary>
    public int MaxConcurrentGenerations { get; set; } = 64;

    /// <summary>Generations that may wait for a slot; past this the silo answers 503 at once instead of queueing without bound.</summary>
    public int MaxQueuedGenerations { get; set; } = 256;

    /// <summary>Serves POST /admin/gc (a blocking full collection, for load tests); off by default.</summary>
    public bool EnableAdmin { get; set; }

    /// <summary>How long /metrics answers from its last scrape (the Prometheus exporter's cache); 0 scrapes every time.</summary>
    public int MetricsCacheMilliseconds { get; set; } = 300;

    /// <summary>max_tokens when a request gives none.</summary>
    public int DefaultMaxTokens { get; set; } = 256;

    /// <summary>The Retry-After of a 503 (a full queue, a draining silo): when a client should try again.</summary>
    public int RetryAfterSeconds { get; set; } = 2;
}

/// <summary>The <c>Tau:Http</c> section's values: each out-of-range value is a failure that names its key.</summary>
public sealed class HttpApiOptionsValidator : IValidateOptions<HttpApiOptions>
{
    public ValidateOptionsResult Validate(string? name, HttpApiOptions options)
    {
        var failures = new List<string>();
        void Require(bool valid, string failure)
        {
            if (!valid) failures.Add(failure);
        }
        const string http = HttpApiOptions.Section;
        for (int i = 0; i < options.ApiKeys.Length; i++)
            Require(!string.IsNullOrWhiteSpace(options.ApiKeys[i]), $"{http}:ApiKeys:{i} is empty (an empty key would match nothing; remove it)");
        Require(options.MaxRequestBodyBytes >= 1024, $"{http}:MaxRequestBodyBytes = {options.MaxRequestBodyBytes} must be at least 1024");
        Require(options.MaxConcurrentGenerations >= 1, $"{http}:MaxConcurrentGenerations = {options.MaxConcurrentGenerations} must be at least 1");
        Require(options.MaxQueuedGenerations >= 0, $"{http}:MaxQueuedGenerations = {options.MaxQueuedGenerations} must not be negative");
        Require(options.MetricsCacheMilliseconds >= 0, $"{http}:MetricsCacheMilliseconds = {options.MetricsCacheMilliseconds} must not be negative");
        Require(options.DefaultMaxTokens >= 1, $"{http}:DefaultMaxTokens = {options.DefaultMaxTokens} must be at least 1");
        Require(options.RetryAfterSeconds >= 1, $"{http}:RetryAfterSeconds = {options.RetryAfterSeconds} must be at least 1");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
