using Orleans.Concurrency;

namespace TauCluster.Grains;

/// <summary>
/// Runs a local session's forward pass and sampling on the thread pool, off the grain scheduler (a decode step is
/// milliseconds of SIMD work; long turns on the scheduler would stall other grains). Stateless workers are activated
/// on the calling silo, up to one per core, so compute is bounded per silo and excess steps queue here.
/// </summary>
[StatelessWorker]
public sealed class LayerWorkerGrain(LocalSessions sessions) : Grain, ILayerWorkerGrain
{
    public Task<int> Step(ComputeStep step)
    {
        var compute = sessions.Get(step.Session);
        return Task.Run(() =>
        {
            if (step.Tokens.Length > 0) compute.Inference.Append(step.Tokens);
            return step.Sample ? compute.Sampler.Sample(compute.Inference.Logits) : -1;
        });
    }
}
