using Orleans.Concurrency;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// Runs local sessions' compute off the grain scheduler (a decode step is milliseconds of SIMD work; long turns on the
/// scheduler would stall other grains). A decode step (one token in, one sampled token out) joins the silo's
/// continuous batch, which runs every ready session of a model through one forward pass; a prefill runs on the thread
/// pool. Stateless workers are activated on the calling silo, and reentrant, so that steps of many sessions can wait
/// for the same batch.
/// </summary>
[StatelessWorker]
[Reentrant]
public sealed class LayerWorkerGrain(LocalSessions sessions, DecodeBatcher batcher) : Grain, ILayerWorkerGrain
{
    public Task<int> Step(ComputeStep step)
    {
        var compute = sessions.Get(step.Session);
        if (step.Sample && step.Tokens.Length == 1)
            return batcher.Step(compute.Inference, step.Tokens[0], compute.Sampler);
        return Task.Run(() =>
        {
            if (step.Tokens.Length > 0) compute.Inference.Append(step.Tokens);
            return step.Sample ? compute.Sampler.Sample(compute.Inference.Logits) : -1;
        });
    }
}
