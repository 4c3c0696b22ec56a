using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>The HTTP API's admission, where the silo serves one (the silo host registers it; an embedded silo has none).</summary>
public interface IGenerationAdmission
{
    int Running { get; }
    int Waiting { get; }
    bool Admitting { get; }
}

[SiloPinnedPlacement]
public sealed class SiloViewGrain(
    ILocalSiloDetails silo,
    LocalSessions sessions,
    LocalShards shards,
    ComputeWorkers compute,
    IEnumerable<IGenerationAdmission> admission) : Grain, ISiloViewGrain
{
    public Task<SiloView> GetView()
    {
        var live = sessions.All.Select(c => new SessionView(c.Session, c.Model, c.Domain, c.Inference.Length,
                c.Inference.Cache.Bytes, c.Inference.Cache.KeyValueBaselineBytes, c.Shards?.Count ?? 0, c.Shards?.Bytes ?? 0, c.Rate.PerSecond, c.Rate.Total))
            .OrderBy(s => s.Session, StringComparer.Ordinal).ToArray();
        var held = shards.All.Select(s => (Shard: ContextShards.Parse(s.Key), s.Bytes))
            .Select(s => new ShardView(s.Shard.Session, s.Shard.Start, s.Bytes))
            .OrderBy(s => s.Session, StringComparer.Ordinal).ThenBy(s => s.Start).ToArray();
        var batch = new BatchView(compute.Waiting, compute.LastBatch, compute.LargestBatch, compute.Batches, compute.Steps + compute.PrefillChunks);
        var api = admission.FirstOrDefault() is { } gate ? new AdmissionView(gate.Running, gate.Waiting, gate.Admitting) : null;
        return Task.FromResult(new SiloView(silo.SiloAddress.ToString(), compute.Device.Name, live, held, sessions.Rate.PerSecond, batch, api));
    }
}
