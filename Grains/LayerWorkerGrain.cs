using Orleans.Concurrency;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// Runs local sessions' compute off the grain scheduler (prefills and replays are long SIMD work; long turns on the
/// scheduler would stall other grains). Stateless workers are activated on the calling silo, and reentrant, so that
/// many sessions' work can be in flight. Session grains send decode steps straight to the <see cref="DecodeBatcher"/>;
/// one that arrives here (one token in, a sample out) joins the same batch, unless the session has context shards.
/// </summary>
[StatelessWorker]
[Reentrant]
public sealed class LayerWorkerGrain(LocalSessions sessions, DecodeBatcher batcher) : Grain, ILayerWorkerGrain
{
    public Task<int> Step(ComputeStep step)
    {
        var compute = sessions.Get(step.Session);
        // A session with context shards waits on them in every layer: it runs alone rather than hold up a batch.
        if (step.Sample && step.Tokens.Length == 1 && !compute.Inference.HasExternalContext)
            return batcher.Step(compute.Inference, step.Tokens[0], compute.Sampler).AsTask();
        return Task.Run(() =>
        {
            if (step.Tokens.Length > 0) compute.Inference.Append(step.Tokens);
            return step.Sample ? compute.Sampler.Sample(compute.Inference.Logits) : -1;
        });
    }
}
