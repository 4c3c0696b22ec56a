using System.Diagnostics.Metrics;

namespace TauCluster.Grains;

/// <summary>
/// TauCluster's own meter, exported beside Orleans' meters (Prometheus at /metrics on the silo): latency of the first
/// token and between tokens, tokens generated, and the live sessions' caches against what K/V caches would take.
/// The meter comes from the silo's own <see cref="IMeterFactory"/>, so that where several silos share a process (tests,
/// an embedded silo beside another) each silo's exporter can take its own meter and not every meter of that name.
/// </summary>
public sealed class TauMetrics : IDisposable
{
    public const string MeterName = "TauCluster";

    public TauMetrics(IMeterFactory meters, LocalSessions sessions, LocalShards shards, Engine.ComputeWorkers compute)
    {
        Meter = meters.Create(MeterName);
        TimeToFirstToken = Meter.CreateHistogram("tau.time_to_first_token", "s", "From a generation request reaching its session to its first new token", advice: LatencyBuckets);
        InterTokenLatency = Meter.CreateHistogram("tau.inter_token_latency", "s", "Between consecutive generated tokens of one request", advice: LatencyBuckets);
        GeneratedTokens = Meter.CreateCounter<long>("tau.generated_tokens", "{token}", "Tokens generated");
        PromptTokens = Meter.CreateCounter<long>("tau.prompt_tokens", "{token}", "Prompt tokens of API generation requests, cached ones included");
        RequestDuration = Meter.CreateHistogram("tau.request.duration", "s", "API generation requests from arrival to their last byte, by model and finish reason", advice: RequestBuckets);
        Requests = Meter.CreateCounter<long>("tau.requests", "{request}", "API generation requests, by model, finish reason (stop, length, error, cancelled) and status");
        Meter.CreateObservableGauge("tau.active_sessions", () => sessions.Count, "{session}", "Sessions with a live cache on this silo");
        Meter.CreateObservableGauge("tau.cache_bytes", () => new[]
        {
            new Measurement<long>(sessions.CacheBytes, new KeyValuePair<string, object?>("cache", "tau")),
            new Measurement<long>(sessions.BaselineCacheBytes, new KeyValuePair<string, object?>("cache", "kv_baseline")),
        }, "By", "Bytes held by the live session caches, and what (K, V) caches of the same tokens would take");
        Meter.CreateObservableGauge("tau.context_shards", () => shards.Count, "{shard}", "Context shards holding sessions' oldest positions on this silo");
        Meter.CreateObservableGauge("tau.context_shard_bytes", () => shards.Bytes, "By", "Bytes of λ/V cache held by the context shards on this silo");
        ShardQueries = Meter.CreateCounter<long>("tau.context_shard_queries", "{query}", "Layers of forward passes that asked a session's context shards (one round trip to each)");
        ShardQueryBytes = Meter.CreateCounter<long>("tau.context_shard_query_bytes", "By", "Payload bytes of context-shard queries: λs sent, partials received");
        ShardRebuilds = Meter.CreateCounter<long>("tau.context_shard_rebuilds", "{shard}", "Context shards lost and computed again from their sessions' tokens");
        Meter.CreateObservableGauge("tau.batch_waiting", () => compute.Waiting, "{step}", "Decode steps and prompts waiting for their first pass of the continuous batch");
        Meter.CreateObservableCounter("tau.batched_steps", () => compute.Steps, "{step}", "Decode steps run in continuous batches");
        Meter.CreateObservableCounter("tau.batched_prefill_blocks", () => compute.PrefillChunks, "{block}", "Prompt blocks (up to 256 tokens of one session) run in continuous batches");
        Meter.CreateObservableCounter("tau.batches", () => compute.Batches, "{batch}", "Forward passes run by the compute workers");
        if (compute.Accelerator is { } accelerator)
        {
            var device = new KeyValuePair<string, object?>("device", compute.Device.Name);
            var name = new KeyValuePair<string, object?>("device_name", accelerator.Name);
            Meter.CreateObservableGauge("tau.device_memory", () => compute.DeviceModels.SelectMany(m => new[]
            {
                new Measurement<long>(m.WeightBytes, device, name, Model(m), new("use", "weights")),
                new Measurement<long>(m.CachePoolBytes, device, name, Model(m), new("use", "cache_pool")),
                new Measurement<long>(m.CacheBytesInUse, device, name, Model(m), new("use", "cache_in_use")),
            }), "By", "Device memory of each model on this silo's accelerator: its weights, its cache pool, and the part of the pool live sessions hold");
            Meter.CreateObservableGauge("tau.device_memory_total", () => accelerator.MemoryBytes, "By", "Memory of this silo's accelerator");
        }
    }

    private static KeyValuePair<string, object?> Model(Engine.DeviceModel m) =>
        new("model", m.Model.Directory is { } directory ? Path.GetFileName(Path.TrimEndingDirectorySeparator(directory)) : "default");

    /// <summary>Token latencies run from about a millisecond to seconds; the default buckets are for milliseconds.</summary>
    private static readonly InstrumentAdvice<double> LatencyBuckets = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };

    /// <summary>Whole requests run from milliseconds (an error) to minutes (a long reply).</summary>
    private static readonly InstrumentAdvice<double> RequestBuckets = new()
    {
        HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    };

    public Meter Meter { get; }
    public Counter<long> PromptTokens { get; }
    public Histogram<double> RequestDuration { get; }
    public Counter<long> Requests { get; }
    public Histogram<double> TimeToFirstToken { get; }
    public Histogram<double> InterTokenLatency { get; }
    public Counter<long> GeneratedTokens { get; }
    public Counter<long> ShardRebuilds { get; }
    public Counter<long> ShardQueries { get; }
    public Counter<long> ShardQueryBytes { get; }

    public void Dispose() => Meter.Dispose();
}
