// The AI Tutor API's objects, as docs/api.md defines them (only the fields the app reads).
export interface Folder {
  id: string
  name: string
}

export interface Session {
  id: string
  title: string
  folder_id: string | null
  message_count: number
}

export interface Message {
  id: string
  seq: number
  role: 'user' | 'assistant' | 'system'
  content: string
}

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

export interface Document {
  id: string
  title: string
  filename: string
  size: number
  status: 'queued' | 'processing' | 'ready' | 'failed'
  error: string | null
  summary: string | null
  keywords: string[] | null
}

export interface Question {
  index: number
  question: string
  choices: string[]
}

export interface Quiz {
  id: string
  source: { kind: 'session' | 'document'; id: string }
  count: number
  questions: Question[]
}

export interface QuestionResult {
  index: number
  correct: boolean
  given: number
  expected: number
  explanation: string
}

export interface Attempt {
  id: string
  score: number
  total: number
  percent: number
  results: QuestionResult[]
}
