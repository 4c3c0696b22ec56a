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
}
