output "queue_url" {
  description = "The queue the daemon polls"
  value       = aws_sqs_queue.events.url
}

output "queue_arn" {
  description = "The queue's ARN (the Resource of deploy/iam/stacksetd-policy-events.json)"
  value       = aws_sqs_queue.events.arn
}

output "dead_letter_queue_url" {
  description = "Messages received max_receive_count times without being deleted"
  value       = aws_sqs_queue.dead_letter.url
}

output "settings_line" {
  description = "Paste into the daemon's settings file"
  value       = "events: {queue_url: ${aws_sqs_queue.events.url}}"
}

output "environment_line" {
  description = "Or set it in the daemon's environment"
  value       = "STACKSETD_EVENTS__QUEUE_URL=${aws_sqs_queue.events.url}"
}

output "daemon_policy_json" {
  description = "The daemon's queue permissions, to attach yourself when daemon_role_name is not set"
  value       = data.aws_iam_policy_document.daemon.json
}
