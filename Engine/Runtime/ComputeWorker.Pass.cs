namespace TauCluster.Engine;

public sealed partial class ComputeWorker
{
    /// <summary>The steps of one pass and what the forward pass reads of them, in arrays made once.</summary>
    private sealed class PassBatch(ComputeWorker owner) : IChunkedWork
    {
        private readonly SessionStep[] steps = new SessionStep[owner.RowBudget];
        private readonly int[] tokens = new int[owner.RowBudget];
        private readonly Lane[] lanes = new Lane[owner.RowBudget];
        /// <summary>Prompts with blocks still to run, oldest first: they go before new prompts.</summary>
        private readonly List<SessionStep> carried = new(owner.RowBudget);
        private readonly bool[] finished = new bool[owner.RowBudget];
        private float[]? passLogits;
        private int passVocab;
        private int rows;

        public int Count { get; private set; }
        public int DecodeCount { get; private set; }
        public bool HasCarried => carried.Count > 0;
        public ReadOnlySpan<int> Tokens => tokens.AsSpan(0, rows);
        public ReadOnlySpan<Lane> Lanes => lanes.AsSpan(0, Count);

        public void Gather()
        {
            Count = rows = 0;
            while (Count < owner.MaxBatch && owner.decodes.TryDequeue(out var step))
            {
                Interlocked.Decrement(ref owner.waiting);
                Add(step);
            }
            DecodeCount = Count;
            // The decode steps take at most MaxBatch rows, so the oldest prompt's block always fits; the others go in order.
            foreach (var step in carried)
            {
                if (rows + step.NextBlock > owner.RowBudget) return;
                Add(step);
            }
            while (owner.prefills.TryPeek(out var step) && rows + step.NextBlock <= owner.RowBudget)
            {
                owner.prefills.TryDequeue(out _);
                Interlocked.Decrement(ref owner.waiting);
                carried.Add(step);
                Add(step);
            }
        }

        private void Add(SessionStep step)
        {
            int n = step.NextBlock;
            step.Remaining.Span[..n].CopyTo(tokens.AsSpan(rows));
            lanes[Count] = step.Session.Lane(n);
            steps[Count++] = step;
            rows += n;
        }

        /// <summary>
        /// Hands each lane its logits row and tokens and samples the lanes whose steps ran their last block, in
        /// parallel (one chunk per lane: every session has its own sampler); then completes those steps, or queues a
        /// run's next decode step for the next pass.
        /// </summary>
        public void Finish(float[] logits, int vocab, KernelPool pool)
        {
            (passLogits, passVocab) = (logits, vocab);
            pool.For(Count, this);
            for (int i = 0; i < Count; i++)
            {
                if (!finished[i]) continue;
                var step = steps[i];
                if (i >= DecodeCount) carried.Remove(step);
                if (step.Complete(null)) owner.EnqueueDecode(step);
            }
            passLogits = null;
            Clear();
        }

        void IChunkedWork.RunChunk(int i)
        {
            var step = steps[i];
            int n = lanes[i].Rows;
            step.Session.AcceptBlock(step.Remaining.Span[..n], passLogits.AsSpan(i * passVocab, passVocab));
            finished[i] = step.Advance(n);
            if (finished[i] && step.Samples) step.SampleInPass();
        }

        /// <summary>A failed pass leaves its sessions' caches unknown: all its steps fail, prompts with blocks left too.</summary>
        public void Fail(Exception error)
        {
            for (int i = 0; i < Count; i++)
            {
                if (i >= DecodeCount) carried.Remove(steps[i]);
                steps[i].Fail(error);
            }
            Clear();
        }

        public void FailAll(Exception error)
        {
            Count = rows = 0;
            foreach (var step in carried) step.Fail(error);
            carried.Clear();
            owner.FailQueued(error);
        }

        /// <summary>Holds no session past its pass.</summary>
        private void Clear()
        {
            Array.Clear(lanes, 0, Count);
            Array.Clear(steps, 0, Count);
        }
    }
}
